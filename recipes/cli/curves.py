"""`recipes curves RUN_DIR`: plot a run's learning curves and print the diagnosis."""

from __future__ import annotations

from pathlib import Path

from recipes.cli.parsing import command_parser
from recipes.core.plots import plot_curves
from recipes.tuning.curves import diagnose, format_findings, load_history


def curves_command(argv: list[str]) -> None:
    """`recipes curves RUN_DIR [--out PNG]`: plot a run's curves and print the diagnosis."""
    parser = command_parser("recipes curves", description=__doc__)
    parser.add_argument("run_dir", help="a folder `recipes train` wrote")
    parser.add_argument("--out", help="PNG file (default RUN_DIR/curves.png)")
    args = parser.parse_args(argv)
    history = load_history(args.run_dir)
    findings = diagnose(history)
    out = plot_curves(
        history["steps"], history["epochs"], args.out or Path(args.run_dir) / "curves.png"
    )
    print(f"wrote {out}\n{format_findings(findings)}")

"""`recipes tune [RECIPE.yaml]`: the seven-step procedure's options."""

from __future__ import annotations

import sys

from recipes.cli.parsing import command_parser, positive_int
from recipes.tuning.procedure import TuneOptions, tune


def tune_command(argv: list[str]) -> None:
    """`recipes tune [RECIPE.yaml] [--budget 5m|N] [--ensemble K] [--output_dir DIR]`."""
    parser = command_parser("recipes tune", description="the lecture's procedure, end to end")
    parser.add_argument("recipe", nargs="?", help="recipe YAML (default: embedded digits)")
    parser.add_argument("--budget", default="5m", help="wall clock (1h, 5m, 300s) or trials (12)")
    parser.add_argument(
        "--ensemble", type=positive_int, default=1, help="final: ensemble of the top K"
    )
    parser.add_argument("--output_dir", help="tune folder (default runs/tune-NAME)")
    parser.add_argument("--report_to", default="none", help="trial tracking: none or wandb")
    parser.add_argument("--overwrite", action="store_true", help="start the tune folder over")
    args = parser.parse_args(argv)
    options = TuneOptions(args.budget, args.ensemble, args.output_dir, args.report_to,
                          args.overwrite)  # fmt: skip
    sys.exit(tune(args.recipe, options))

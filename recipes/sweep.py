"""`recipes sweep`: run a W&B sweep file here, check it (--dry-run), refine it (--refine)."""

from __future__ import annotations

import argparse
from pathlib import Path

from recipes.errors import RecipeError, command_parser
from recipes.search import budget, run_stage
from recipes.sweep_agent import agent_command
from recipes.sweep_params import describe, edge_values
from recipes.sweep_refine import refine
from recipes.sweep_report import summarize
from recipes.sweep_spec import SweepSpec, grid_points, load_sweep, trial_args


def print_plan(spec: SweepSpec, args: argparse.Namespace) -> None:
    """--dry-run: what would run, training nothing."""
    target = budget(spec, args.trials)
    pruner = f"hyperband {spec.hyperband}" if spec.hyperband else "none"
    print(
        f"sweep {spec.name}: method {spec.method}, metric {spec.metric} ({spec.goal}), "
        f"{target} trials, pruner {pruner}"
    )
    print("fixed: " + (" ".join(trial_args(spec, {})) or "(none)"))
    if spec.method == "grid":
        points = grid_points(spec)
        print(
            f"grid: {len(points)} combinations"
            + (f", {target} run (run_cap)" if target < len(points) else "")
        )
        for i, point in enumerate(points, 1):
            print(f"  {i:3d}. " + " ".join(f"{k}={v}" for k, v in point.items()))
    else:
        print("search space:")
        for param in spec.params:
            print(f"  {describe(param)}")
    first = {param.name: edge_values(param)[0] for param in spec.params}
    print("wandb agent runs, e.g.: " + " ".join(agent_command(spec.raw, {**spec.fixed, **first})))
    if args.refine or "refine" in spec.raw:
        print("then: a refine stage around the top trials, trained longer (refine.yaml)")


def sweep_command(argv: list[str]) -> None:
    """`recipes sweep SWEEP.yaml [--workers N] [--storage URL] [--dry-run] [--refine] ...`."""
    parser = command_parser("recipes sweep", description="run a W&B sweep file locally")
    parser.add_argument("sweep", help="W&B sweep YAML (method, metric, parameters, ...)")
    parser.add_argument("--output_dir", help="sweep folder (default sweeps/NAME)")
    parser.add_argument("--storage", help="Optuna storage URL (default SQLite in the sweep folder)")
    parser.add_argument(
        "--workers", type=int, default=1, help="trials at once, in separate processes"
    )
    parser.add_argument(
        "--trials", type=int, help="number of trials (default run_cap or the whole grid)"
    )
    parser.add_argument("--seed", type=int, default=0, help="sampler seed")
    parser.add_argument(
        "--qmc", action="store_true", help="random method: quasi-random Sobol points"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="check the file, print what would run"
    )
    parser.add_argument(
        "--refine", action="store_true", help="then a refine stage around the top trials"
    )
    parser.add_argument("--overwrite", action="store_true", help="start the sweep folder over")
    args = parser.parse_args(argv)
    if args.workers < 1 or (args.trials is not None and args.trials < 1):
        raise RecipeError("--workers and --trials must be at least 1")
    spec = load_sweep(args.sweep)
    if args.dry_run:
        print_plan(spec, args)
        return
    folder = Path(args.output_dir or Path("sweeps") / spec.name)
    study = run_stage(spec, folder, args)
    summarize(spec, study, folder)
    if args.refine or "refine" in spec.raw:
        fine, fine_study = refine(spec, study, folder, args)
        summarize(fine, fine_study, folder / "refine")

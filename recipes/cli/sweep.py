"""`recipes sweep SWEEP.yaml`: its options, then the sweep or its plan (--dry-run)."""

from __future__ import annotations

from recipes.cli.parsing import command_parser, positive_int
from recipes.core.errors import Interrupted
from recipes.search.engine import SweepOptions
from recipes.search.spec import load_sweep
from recipes.search.sweep import plan_lines, sweep


def sweep_command(argv: list[str]) -> None:
    """`recipes sweep SWEEP.yaml [--workers N] [--storage URL] [--dry-run] [--refine] ...`."""
    parser = command_parser("recipes sweep", description="run a W&B sweep file locally")
    parser.add_argument("sweep", help="W&B sweep YAML (method, metric, parameters, ...)")
    parser.add_argument("--output_dir", help="sweep folder (default sweeps/NAME)")
    parser.add_argument("--storage", help="Optuna storage URL (default SQLite in the sweep folder)")
    parser.add_argument(
        "--workers", type=positive_int, default=1, help="trials at once, in processes"
    )
    parser.add_argument(
        "--trials", type=positive_int, help="trials (default run_cap or the whole grid)"
    )
    parser.add_argument("--seed", type=int, default=0, help="sampler seed")
    parser.add_argument("--qmc", action="store_true", help="random method: Sobol points")
    parser.add_argument("--dry-run", action="store_true", help="check the file, show the plan")
    parser.add_argument("--refine", action="store_true", help="then refine around the top trials")
    parser.add_argument("--overwrite", action="store_true", help="start the sweep folder over")
    parser.add_argument(
        "--heartbeat", type=positive_int, default=60,
        help="seconds between a trial's heartbeats; one silent for twice this is run again",
    )  # fmt: skip
    args = parser.parse_args(argv)
    options = SweepOptions(
        workers=args.workers, trials=args.trials, storage=args.storage, seed=args.seed,
        qmc=args.qmc, overwrite=args.overwrite, refine=args.refine, heartbeat=args.heartbeat,
    )  # fmt: skip
    if args.dry_run:
        print("\n".join(plan_lines(load_sweep(args.sweep), options)))
        return
    try:
        sweep(args.sweep, options, args.output_dir)
    except KeyboardInterrupt:
        raise Interrupted(
            "sweep stopped; its finished trials are kept; run the same command again to go on "
            "(an interrupted trial resumes from its checkpoint)"
        ) from None

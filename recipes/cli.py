"""`recipes VERB ...`: one entry point; bad input prints one line and exits with 2."""

from __future__ import annotations

import importlib
import os
import sys

from recipes.errors import RecipeError, command_parser

# verb -> (module, function, one-line description); modules load only when their verb runs.
VERBS: dict[str, tuple[str, str, str]] = {
    "tune": ("recipes.procedure", "tune_command", "the seven-step procedure end to end, a report"),
    "train": (
        "recipes.cli",
        "train_command",
        "train a recipe (YAML file, then --key value overrides)",
    ),
    "schedules": ("recipes.cli", "schedules_command", "draw every LR schedule family to PNG files"),
    "sweep": ("recipes.sweep", "sweep_command", "run a W&B sweep file locally (Optuna); --refine"),
    "ensemble": ("recipes.ensemble_command", "ensemble_command", "score or train an ensemble"),
    "soup": ("recipes.soup", "soup_command", "uniform and greedy model soups of checkpoints"),
    "transfer": (
        "recipes.transfer",
        "transfer_command",
        "transfer advice, the transfer study, backbones",
    ),
    "check": (
        "recipes.check_command",
        "check_command",
        "initial loss, overfit a small sample, LR range test",
    ),
    "curves": (
        "recipes.curves",
        "curves_command",
        "plot a run's learning curves and diagnose them",
    ),
}


def run_recipe(config) -> dict:
    """The route a recipe takes to training; every route ends in the same run folder layout."""
    if config.training.parallel == "pipeline":
        from recipes.pipeline import train_pipeline

        return train_pipeline(config)
    if config.model.mode != "scratch" or config.model.strategy == "auto":
        from recipes.transfer import run_transfer

        return run_transfer(config)
    from recipes.engine import train

    return train(config)


def train_command(argv: list[str]) -> None:
    """`recipes train [RECIPE.yaml] [--key value ...]`."""
    from recipes.config import build_parser, parse_config

    if argv[:1] in (["-h"], ["--help"]):
        build_parser().print_help()
        return
    recipe = argv[0] if argv and not argv[0].startswith("--") else None
    results = run_recipe(parse_config(recipe, argv[1:] if recipe else argv))
    if int(os.environ.get("RANK", "0")) == 0:  # one line, whatever the launcher
        print(
            f"results in {results['run_dir']}: best val accuracy "
            f"{results['best_val_accuracy']:.4f} (epoch {results['best_epoch']}), "
            f"model in {results['run_dir']}/model"
        )


def schedules_command(argv: list[str]) -> None:
    """`recipes schedules --out DIR [--steps N] [--warmup N]`."""
    from recipes.schedules import plot_schedules

    parser = command_parser("recipes schedules", description=VERBS["schedules"][2])
    parser.add_argument("--out", default="schedules")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=50)
    args = parser.parse_args(argv)
    paths = plot_schedules(args.out, args.steps, args.warmup)
    print(f"wrote {len(paths)} figures to {args.out}")


def usage() -> str:
    lines = ["usage: recipes VERB [ARGS]", "", "verbs:"]
    lines += [f"  {verb:<12}{description}" for verb, (_, _, description) in VERBS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Dispatch a verb; a `RecipeError` becomes `error: ...` on stderr and exit code 2."""
    argv = sys.argv[1:] if argv is None else argv
    verb, rest = (argv[0], argv[1:]) if argv else ("train", [])
    if verb in ("-h", "--help"):
        print(usage())
        return
    if verb not in VERBS:
        print(f"error: unknown verb {verb!r}\n{usage()}", file=sys.stderr)
        sys.exit(2)
    module, function, _ = VERBS[verb]
    try:
        getattr(importlib.import_module(module), function)(rest)
    except RecipeError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)

"""`recipes VERB ...`: one entry point; bad input prints one line and exits with 2.

The command line only parses arguments and prints; what each verb does lives in the packages.
"""

from __future__ import annotations

import importlib
import sys

from recipes.core.errors import Interrupted, RecipeError, show_recipe_warnings

# verb -> (module, function, one-line description); modules load only when their verb runs.
VERBS: dict[str, tuple[str, str, str]] = {
    "tune": ("recipes.cli.tune", "tune_command", "the seven-step procedure end to end, a report"),
    "train": ("recipes.cli.train", "train_command", "train a recipe (YAML, then --key value)"),
    "schedules": ("recipes.cli.train", "schedules_command", "draw every LR schedule to PNGs"),
    "sweep": ("recipes.cli.sweep", "sweep_command", "run a W&B sweep file locally (Optuna)"),
    "ensemble": ("recipes.cli.ensemble", "ensemble_command", "score or train an ensemble"),
    "soup": ("recipes.cli.soup", "soup_command", "uniform and greedy model soups of checkpoints"),
    "transfer": ("recipes.cli.transfer", "transfer_command", "transfer advice, study, backbones"),
    "check": ("recipes.cli.check", "check_command", "initial loss, overfit a sample, LR range"),
    "curves": ("recipes.cli.curves", "curves_command", "plot a run's curves and diagnose them"),
}


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
    show_recipe_warnings()
    try:
        getattr(importlib.import_module(module), function)(rest)
    except RecipeError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except Interrupted as err:
        print(f"interrupted: {err}", file=sys.stderr)
        sys.exit(130)

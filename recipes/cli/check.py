"""`recipes check RECIPE.yaml`: the checks on what the recipe would train, and a tuned copy."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from recipes.cli.parsing import command_parser, positive_int, split_recipe, wants_help
from recipes.core import runs
from recipes.core.config import parse_config, read_recipe
from recipes.core.errors import RecipeError
from recipes.tuning.check_report import CHECKS_FILE
from recipes.tuning.inputs import check_recipe


def check_parser() -> argparse.ArgumentParser:
    """The check's own options; every other --key value is a recipe override."""
    parser = command_parser(
        "recipes check RECIPE.yaml",
        description="Initial loss, overfit a small sample and an LR range test on the recipe's "
        "model and data; checks.json and plots go to the run folder. Exit code 1 if a check fails.",
        epilog="Other --key value pairs override the recipe as in `recipes train`. To train with "
        "the suggestion: --write_recipe NEW.yaml, then `recipes train NEW.yaml`.",
    )
    parser.add_argument(
        "--overfit_batches", type=positive_int, default=5, help="batches in the sample"
    )
    parser.add_argument(
        "--overfit_steps", type=positive_int, default=300, help="steps to memorise it"
    )
    parser.add_argument(
        "--sweep_steps", type=positive_int, default=100, help="steps of the LR sweep"
    )
    parser.add_argument(
        "--trial_lrs", type=parse_lrs, default=(), help="short runs at LRs, e.g. 1e-1,1e-2,1e-3"
    )
    parser.add_argument(
        "--trial_steps", type=positive_int, default=100, help="steps of each short run"
    )
    parser.add_argument("--write_recipe", metavar="NEW.yaml", help="recipe copy with the LR found")
    return parser


def check_command(argv: list[str]) -> None:
    """`recipes check RECIPE.yaml [--key value ...]`: the checks on what the recipe would train."""
    parser = check_parser()
    if wants_help(argv):
        parser.print_help()
        return
    recipe, rest = split_recipe(argv)
    args, overrides = parser.parse_known_args(rest)
    config = parse_config(recipe, overrides)
    report = check_recipe(
        config,
        overfit_batches=args.overfit_batches,
        overfit_steps=args.overfit_steps,
        sweep_steps=args.sweep_steps,
        trial_lrs=args.trial_lrs,
        trial_steps=args.trial_steps,
    )
    print(f"{report.table()}\nwrote {runs.run_dir(config) / CHECKS_FILE} and plots")
    if args.write_recipe:
        write_recipe_copy(
            recipe, overrides, config.to_dict(), report.suggested_lr, args.write_recipe
        )
    if not report.passed:
        sys.exit(1)


def parse_lrs(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise RecipeError(f"--trial_lrs {text!r}: give numbers separated by commas") from None


def write_recipe_copy(
    recipe, overrides: list[str], flat: dict, lr: float | None, path: str
) -> None:
    """The recipe's keys, the command line's overrides, and the suggested learning_rate."""
    if lr is None:
        print(f"no learning rate to suggest: {path} not written")
        return
    values = read_recipe(recipe) if recipe else {}
    for key in (arg[2:].split("=", 1)[0] for arg in overrides if arg.startswith("--")):
        values[key] = flat[key]
    values["learning_rate"] = float(f"{lr:.2g}")
    Path(path).write_text(yaml.safe_dump(values, sort_keys=False))
    print(f"wrote {path} with learning_rate {values['learning_rate']}")

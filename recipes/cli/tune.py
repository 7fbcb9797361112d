"""`recipes tune [RECIPE.yaml]`: the seven-step procedure's options."""

from __future__ import annotations

import sys

from recipes.cli.parsing import command_parser
from recipes.core.errors import RecipeError
from recipes.tuning.procedure import TuneOptions, tune


def tune_command(argv: list[str]) -> None:
    """`recipes tune [RECIPE.yaml] [--budget 5m|N] [--ensemble K] [--output_dir DIR]`."""
    parser = command_parser("recipes tune", description="the lecture's procedure, end to end")
    parser.add_argument("recipe", nargs="?", help="recipe YAML (default: embedded digits)")
    parser.add_argument("--budget", default="5m", help="wall clock (5m, 300s) or trials (12)")
    parser.add_argument("--ensemble", type=int, default=1, help="final: ensemble of the top K")
    parser.add_argument("--output_dir", help="tune folder (default runs/tune-NAME)")
    parser.add_argument("--report_to", default="none", help="trial tracking: none or wandb")
    parser.add_argument("--overwrite", action="store_true", help="start the tune folder over")
    args = parser.parse_args(argv)
    if args.ensemble < 1:
        raise RecipeError("--ensemble must be at least 1 (1: the final model alone)")
    options = TuneOptions(args.budget, args.ensemble, args.output_dir, args.report_to,
                          args.overwrite)  # fmt: skip
    sys.exit(tune(args.recipe, options))

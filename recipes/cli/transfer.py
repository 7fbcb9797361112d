"""`recipes transfer {advise,study,compare-backbones}`: their options and printed results."""

from __future__ import annotations

from pathlib import Path

from recipes.cli.parsing import command_parser, positive_int, split_recipe
from recipes.core.config import parse_config
from recipes.transfer.advise import advise
from recipes.transfer.study import StudyOptions, compare_backbones, run_study, write_study


def advise_command(argv: list[str]) -> None:
    """`recipes transfer advise RECIPE.yaml [--key value ...]`."""
    recipe, overrides = split_recipe(argv)
    print(advise(parse_config(recipe, overrides)).report())


def study_command(argv: list[str]) -> None:
    """`recipes transfer study [--model_name M] [--shots 5 10 20 all] [--out DIR] ...`."""
    defaults = StudyOptions()
    parser = command_parser("recipes transfer study", description=StudyOptions.__doc__)
    parser.add_argument("--model_name", default=defaults.model_name)
    parser.add_argument("--image_size", type=positive_int, default=defaults.image_size)
    parser.add_argument("--checkpoint", help="source weights; default: pretrain on --source")
    parser.add_argument("--source", nargs="+", default=defaults.source)
    parser.add_argument("--target", nargs="+", default=defaults.target)
    parser.add_argument("--shots", nargs="+", default=defaults.shots)
    parser.add_argument("--source_epochs", type=positive_int, default=defaults.source_epochs)
    parser.add_argument(
        "--updates", type=positive_int, default=defaults.updates, help="steps per run"
    )
    parser.add_argument("--out", default=defaults.out)
    args = vars(parser.parse_args(argv))
    options = StudyOptions(**{k: tuple(v) if isinstance(v, list) else v for k, v in args.items()})
    print(write_study(run_study(options), options))


def compare_command(argv: list[str]) -> None:
    """`recipes transfer compare-backbones [RECIPE] --backbone NAME=CKPT[@ACC] ... [--k v]`."""
    parser = command_parser("recipes transfer compare-backbones")
    parser.add_argument(
        "--backbone", action="append", required=True, help="NAME[=CHECKPOINT][@ACCURACY]"
    )
    parser.add_argument("--out", default="runs/compare-backbones")
    known, rest = parser.parse_known_args(argv)
    recipe, overrides = split_recipe(rest)
    out = Path(known.out)
    for row in compare_backbones(recipe, overrides, known.backbone, out):
        pre = "n/a" if row["pretrain_accuracy"] is None else f"{row['pretrain_accuracy']:.3f}"
        print(
            f"{row['backbone']:40} pretraining {pre}  probe test {row['probe_test_accuracy']:.3f}"
        )
    print(f"plot {out / 'compare.png'}")


COMMANDS = {
    "advise": (advise_command, "place a recipe's data in the transfer table and say which mode"),
    "study": (study_command, "scratch vs probe vs fine-tune against labels per class"),
    "compare-backbones": (compare_command, "linear-probe accuracy of several backbones"),
}


def transfer_command(argv: list[str]) -> None:
    """`recipes transfer {advise,study,compare-backbones} ...`."""
    if not argv or argv[0] not in COMMANDS:
        parser = command_parser("recipes transfer")
        parser.add_argument(
            "command",
            choices=sorted(COMMANDS),
            help="; ".join(f"{k}: {v[1]}" for k, v in COMMANDS.items()),
        )
        parser.parse_args(argv[:1])
    COMMANDS[argv[0]][0](argv[1:])

"""`recipes ensemble`: where the members come from, and the ensemble's options."""

from __future__ import annotations

import argparse
from pathlib import Path

from accelerate import PartialState

from recipes.cli.parsing import command_parser, positive_int, split_recipe
from recipes.core import runs
from recipes.core.arguments import DataArguments
from recipes.core.config import parse_config
from recipes.core.errors import RecipeError
from recipes.ensembles.ensemble import COMBINE, check_members
from recipes.ensembles.members import (
    member_data,
    score_ensemble,
    snapshot_members,
    sweep_members,
    train_members,
)
from recipes.ensembles.metrics import DEFAULT_METRICS, METRICS_HELP, Scorer


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, str | None, list[str]]:
    """Options of `recipes ensemble`; the rest are `--key value` recipe overrides."""
    recipe, rest = split_recipe(argv)
    usage = (
        "recipes ensemble [RECIPE.yaml] --members N [--key value ...] | --from-sweep DIR "
        "--top K | --snapshots RUN_DIR | --models DIR DIR... [options]"
    )
    parser = command_parser("recipes ensemble", usage=usage)
    parser.add_argument(
        "--members", type=positive_int, help="train N members of RECIPE that differ by seed"
    )
    parser.add_argument("--from-sweep", dest="sweep", help="take the best trials of a sweep folder")
    parser.add_argument("--top", type=positive_int, default=3, help="how many trials of the sweep")
    parser.add_argument("--snapshots", help="a run folder whose snapshots are the members")
    parser.add_argument("--models", nargs="+", help="saved model folders as members")
    parser.add_argument("--out", help="ensemble folder")
    parser.add_argument(
        "--combine",
        nargs="+",
        default=["probs"],
        choices=sorted(COMBINE),
        help="; ".join(f"{k}: {v}" for k, v in COMBINE.items()) + " (the first is saved)",
    )
    parser.add_argument("--metrics", nargs="+", default=list(DEFAULT_METRICS), help=METRICS_HELP)
    parser.add_argument("--data", help="recipe whose data scores members saved outside run folders")
    parser.add_argument("--batch_size", type=positive_int, default=256)
    args, overrides = parser.parse_known_args(rest)
    if sum(map(bool, (args.members is not None, args.sweep, args.snapshots, args.models))) != 1:
        raise RecipeError(
            "give one source of members: RECIPE.yaml --members N, --from-sweep DIR --top K, "
            "--snapshots RUN_DIR or --models DIR DIR..."
        )
    if (overrides or recipe) and args.members is None:
        raise RecipeError("a recipe and --key value overrides only go with --members N")
    return args, recipe, overrides


def gather(
    args, recipe: str | None, overrides: list[str]
) -> tuple[list[Path], Path, DataArguments]:
    """Member folders (trained now if asked), the ensemble folder and the data to score on."""
    if args.members is not None:
        config = parse_config(recipe, overrides)
        out = Path(args.out or f"{runs.run_dir(config)}-ensemble")
        return train_members(config, args.members, out), out, config.data
    if args.sweep:
        dirs, out = sweep_members(Path(args.sweep), args.top), Path(args.sweep) / f"top{args.top}"
    elif args.snapshots:
        dirs, out = (
            snapshot_members(Path(args.snapshots)),
            Path(args.snapshots) / "snapshot_ensemble",
        )
    else:
        dirs, out = [Path(d) for d in args.models], Path("runs") / "ensemble"
    check_members(dirs)
    return dirs, Path(args.out or out), member_data(dirs, args.data)


def ensemble_command(argv: list[str]) -> None:
    """`recipes ensemble`: gather or train members, score them and the ensemble, save it."""
    args, recipe, overrides = parse_args(argv)
    scorer = Scorer(args.metrics)
    dirs, out, data_args = gather(args, recipe, overrides)
    if not PartialState().is_main_process:
        return
    text = score_ensemble(dirs, out, data_args, args.combine, scorer, args.batch_size)
    load = f"recipes.ensembles.load({str(out)!r})"
    print(f"{text}\n\n{len(dirs)} members; {load} loads the ensemble")

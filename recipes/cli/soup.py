"""`recipes soup CKPT_DIR...`: the soup's options."""

from __future__ import annotations

from pathlib import Path

from recipes.cli.parsing import command_parser, positive_int
from recipes.ensembles.metrics import DEFAULT_METRICS, METRICS_HELP, Scorer
from recipes.ensembles.soup import soup


def soup_command(argv: list[str]) -> None:
    """`recipes soup CKPT_DIR...`: uniform and greedy soups against the best member and ensemble."""
    parser = command_parser("recipes soup")
    parser.add_argument("checkpoints", nargs="+", help="saved model folders of one architecture")
    parser.add_argument("--out", help="folder for the soups (default: beside the checkpoints)")
    parser.add_argument("--metrics", nargs="+", default=list(DEFAULT_METRICS), help=METRICS_HELP)
    parser.add_argument("--data", help="recipe whose data scores checkpoints outside run folders")
    parser.add_argument("--batch_size", type=positive_int, default=256)
    args = parser.parse_args(argv)
    dirs = [Path(d) for d in args.checkpoints]
    print(soup(dirs, args.out, args.data, Scorer(args.metrics), args.batch_size))

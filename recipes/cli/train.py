"""`recipes train` and `recipes schedules`: parse, run, print where the results are."""

from __future__ import annotations

import os

import torch

from recipes.cli.parsing import command_parser, positive_int, split_recipe
from recipes.core.config import build_parser, parse_config
from recipes.training.route import run_recipe
from recipes.tuning.curves import diagnose, format_findings, load_history


def train_command(argv: list[str]) -> None:
    """`recipes train [RECIPE.yaml] [--key value ...]`: train, then read the learning curves."""
    if argv[:1] in (["-h"], ["--help"]):
        build_parser().print_help()
        return
    recipe, overrides = split_recipe(argv)
    results = run_recipe(parse_config(recipe, overrides))
    if int(os.environ.get("RANK", "0")) == 0:  # one line, whatever the launcher
        run_dir = results["run_dir"]
        print(format_findings(diagnose(load_history(run_dir))))
        print(
            f"results in {run_dir}: best val accuracy {results['best_val_accuracy']:.4f} "
            f"(epoch {results['best_epoch']}), model in {run_dir}/model"
        )
    if torch.distributed.is_initialized():  # a clean exit: no gloo thread left running
        torch.distributed.destroy_process_group()


def schedules_command(argv: list[str]) -> None:
    """`recipes schedules --out DIR [--steps N] [--warmup N]`."""
    from recipes.schedules.plots import plot_schedules

    parser = command_parser("recipes schedules", description="draw every LR schedule family")
    parser.add_argument("--out", default="schedules")
    parser.add_argument("--steps", type=positive_int, default=1000)
    parser.add_argument("--warmup", type=int, default=50)
    args = parser.parse_args(argv)
    paths = plot_schedules(args.out, args.steps, args.warmup)
    print(f"wrote {len(paths)} figures to {args.out}")

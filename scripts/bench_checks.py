"""Time the three tuning checks on the digits default with a timm test model.

Counts the optimizer steps each check takes (the LR range test should cost about 100) and
compares the checks' time with one training epoch of the same model, measured side by side.
Usage: python scripts/bench_checks.py [--model_name test_convnext] [--threads N]
"""

from __future__ import annotations

import argparse
import copy
import time
from collections import Counter

import torch
from accelerate.utils import set_seed
from torch.optim.optimizer import register_optimizer_step_post_hook

from recipes.core.config import parse_config
from recipes.core.data import build_transforms, make_loader
from recipes.training.setup import build_setup
from recipes.tuning.check_report import CheckSettings, make_optimizer, train_step
from recipes.tuning.checks import run_checks

GOAL_SECONDS = 60.0


def one_epoch(model, loader, settings) -> float:
    """Seconds for one plain training epoch over the same loader."""
    model = copy.deepcopy(model).train()
    optimizer = make_optimizer(model, settings, 3e-3, 0.05)
    start = time.perf_counter()
    for batch in loader:
        train_step(model, optimizer, torch.nn.functional.cross_entropy, batch)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_name", default="test_convnext")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = parse_config(None, ["--model_name", args.model_name, "--report_to", "none"])
    set_seed(config.training.seed)
    t, setup = config.training, build_setup(config)
    transform = build_transforms(config.data, setup.data_config, augment=False)[0]
    loader = make_loader(setup.data, "train", transform, t.per_device_train_batch_size, True)
    steps: Counter = Counter()  # optimizer -> updates; each check builds its own optimizer
    handle = register_optimizer_step_post_hook(lambda opt, *_: steps.update([id(opt)]))
    start = time.perf_counter()
    report = run_checks(setup.model, loader, setup.data.num_classes, lr=t.learning_rate)
    checks_seconds = time.perf_counter() - start
    handle.remove()
    overfit_steps, sweep_steps = list(steps.values())
    epoch_seconds = one_epoch(setup.model, loader, CheckSettings())
    print(report.table())
    print(
        f"\nmodel {args.model_name}, digits train split ({len(loader.dataset)} images), "
        f"batch {t.per_device_train_batch_size}, {args.threads} thread(s)"
    )
    print(
        f"three checks: {checks_seconds:.1f} s (goal < {GOAL_SECONDS:.0f} s: "
        f"{'met' if checks_seconds < GOAL_SECONDS else 'missed'})"
    )
    print(f"optimizer steps: overfit {overfit_steps}, LR range test {sweep_steps} (budget 100)")
    print(
        f"one training epoch: {epoch_seconds:.1f} s ({len(loader)} steps); "
        f"checks / epoch = {checks_seconds / epoch_seconds:.1f}"
    )


if __name__ == "__main__":
    main()

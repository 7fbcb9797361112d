"""Large batches on Fashion-MNIST (Goyal et al. 2017): batch 32 against 8x and 32x larger.

The larger global batches (256 and 1,024) are 2 processes x gradient accumulation of 32 each.
Each trains three ways: batch 32's LR, the linear scaling rule, and the rule with a 2-epoch
gradual warmup; all for the same 8 epochs of a 15,000-image subset (120 updates at 1,024).
test_convnext at 32 px (LayerNorm: accumulation and processes leave its statistics alone),
SGD with momentum; batch 32's LR is `recipes check`'s range-test suggestion. 3 seeds.
Runs, tables and the figure come from scripts/largebatch_study.py's planner and launcher.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import largebatch_study as planner

from studies import common

SMALL = 32


def options(quick: bool):
    """The planner's options: the batches, epochs, subset and warmup of this study."""
    samples, epochs = ("2048", "1") if quick else ("15000", "8")
    return planner.parse_args(["--batch", str(SMALL), "--multipliers", "8", "32",
                               "--epochs", epochs, "--max_train_samples", samples,
                               "--warmup_epochs", "0.5" if quick else "2"])  # fmt: skip


def small_batch_lr(work: Path, quick: bool) -> float:
    """The range test's LR for the small batch (SGD, momentum 0.9) on this study's data."""
    opts = options(quick)
    args = [*planner.run_args(opts, planner.plan(opts)[0]), *common.FASHION]
    found = common.range_test(work, args, quick)
    return found["suggested_lr"] or found["lr_at_min"] / 10


def train(folder: Path, processes: int, args: list[str]) -> dict:
    """One planned run (launched on processes when there are several), with its test score."""
    from recipes.core.config import parse_config

    def run() -> dict:
        outcome = planner.train(folder, processes, args)
        config = parse_config(None, [*args, "--output_dir", str(folder)])
        return {**outcome, "test": common.score(config.data, folder / "best_model")}

    return common.resumable(folder / "outcome", run)


def run(out: Path, work: Path, quick: bool = False) -> None:
    """Every planned run over the seeds; the table of spreads and the figure."""
    opts = options(quick)
    opts.lr = float(f"{small_batch_lr(work, quick):.2g}")
    seeds = (0,) if quick else (0, 1, 2)
    rows = []
    for seed in seeds:
        for index, plan in enumerate(planner.plan(opts)):
            args = [*planner.run_args(opts, plan), *common.FASHION, "--seed", str(seed)]
            result = train(work / f"run{index}-seed{seed}", plan["processes"], args)
            rule = "none" if plan["variant"] == "small LR" else "linear"
            lr = planner.scale_learning_rate(opts.lr, SMALL * plan["multiplier"], SMALL, rule)
            rows.append({**plan, "seed": seed, "lr": lr, "steps": result["steps"],
                         "test_accuracy": result["test"]["accuracy"],
                         "seconds_per_epoch": result["seconds_per_epoch"]})  # fmt: skip
    draw(rows, out / "largebatch.png")
    common.write(out, "largebatch", summary(rows), rows)


def summary(rows: list[dict]) -> str:
    """One line per run: its layout, LR, updates, test accuracy and time per epoch over seeds."""
    small = statistics.mean(r["test_accuracy"] for r in rows if r["multiplier"] == 1)
    lines = []
    for name in dict.fromkeys(r["name"] for r in rows):
        mine = [r for r in rows if r["name"] == name]
        first, acc = mine[0], [r["test_accuracy"] for r in mine]
        lines.append([name, f"{first['processes']} x {first['accumulation']}",
                      f"{first['lr']:.3g}", first["steps"], common.spread(acc),
                      f"{100 * (statistics.mean(acc) - small):+.2f}",
                      f"{median_seconds(mine):.1f}"])  # fmt: skip
    header = ["run", "processes x accumulation", "peak LR", "updates", "test accuracy",
              "points vs batch 32", "s / epoch (median)"]  # fmt: skip
    return common.table(header, lines)


def median_seconds(rows: list[dict]) -> float:
    """Median seconds per epoch over the seeds."""
    return statistics.median(r["seconds_per_epoch"] for r in rows)


def draw(rows: list[dict], path: Path) -> None:
    """Test accuracy (each seed a dot) and seconds per epoch for every run."""
    plt = common.pyplot()
    names = list(dict.fromkeys(r["name"] for r in rows))
    fig, (acc_ax, time_ax) = plt.subplots(1, 2, figsize=(12, 4), sharey=True)
    for y, name in enumerate(names):
        mine = [r for r in rows if r["name"] == name]
        acc_ax.scatter([r["test_accuracy"] for r in mine], [y] * len(mine), color="tab:blue")
        time_ax.barh(y, median_seconds(mine), color="tab:gray")
    acc_ax.set_yticks(range(len(names)), names)
    acc_ax.set(xlabel="test accuracy (one dot per seed)", title="Same epochs, larger batches")
    time_ax.set(xlabel="seconds per epoch (median)", title="2 processes x accumulation")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)

"""Decay families on Fashion-MNIST: step, cosine, linear, inverse-sqrt and constant.

Every family gets the same peak LR (AdamW 3e-3, the Fashion-MNIST recipe's), the same one-epoch
linear warmup and the same 6 epochs (702 updates of 128) on a 15,000-image subset of the
training split; a resnet10t at 32 px, 3 seeds each. Step decay multiplies the LR by 0.1 at each
third of training. Validation on the full 5,000 images, test on the official 10,000.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from studies import common

FAMILIES = ("step", "cosine", "linear", "inverse_sqrt", "constant")
RECIPE = ["--model_name", "resnet10t", "--mixed_precision", "bf16", "--channels_last", "true",
          "--optimizer", "adamw", "--learning_rate", "3e-3", "--weight_decay", "0.05",
          "--label_smoothing", "0.1", "--crop_scale", "0.7", "--hflip", "0.5",
          "--per_device_train_batch_size", "128", "--warmup_epochs", "1",
          "--logging_steps", "10"]  # fmt: skip


def overrides(family: str, seed: int, quick: bool) -> list[str]:
    """One family's run: the shared recipe, its schedule and seed."""
    samples, epochs = ("1000", "2") if quick else ("15000", "6")
    return [*common.FASHION, *RECIPE, "--max_train_samples", samples, "--num_epochs", epochs,
            "--lr_scheduler", family, "--seed", str(seed)]  # fmt: skip


def run(out: Path, work: Path, quick: bool = False) -> None:
    """Train every family over the seeds; the table of test accuracy and the curves."""
    seeds = (0,) if quick else (0, 1, 2)
    rows = []
    for family in FAMILIES:
        for seed in seeds:
            folder = work / f"{family}-{seed}"
            result = common.train(folder, overrides(family, seed, quick))
            history = common.epochs(folder)
            rows.append({"family": family, "seed": seed, "folder": str(folder),
                         "test_accuracy": result["test"]["accuracy"],
                         "val_accuracy": [e["val_accuracy"] for e in history]})  # fmt: skip
    draw(rows, out / "decay.png")
    common.write(out, "decay", summary(rows), rows)


def summary(rows: list[dict]) -> str:
    """Final test and validation accuracy per family, best first."""
    lines = []
    for family in FAMILIES:
        mine = [r for r in rows if r["family"] == family]
        test = [r["test_accuracy"] for r in mine]
        lines.append((statistics.mean(test), [family, common.spread(test),
                      common.spread(r["val_accuracy"][-1] for r in mine)]))  # fmt: skip
    ordered = [line for _, line in sorted(lines, key=lambda x: -x[0])]
    return common.table(["schedule", "test accuracy (best epoch)", "final val accuracy"], ordered)


def draw(rows: list[dict], path: Path) -> None:
    """Left: each schedule's LR by update (as the runs logged it); right: median val accuracy."""
    from recipes.core import runs

    plt = common.pyplot()
    fig, (lr_ax, acc_ax) = plt.subplots(1, 2, figsize=(11, 4))
    for family in FAMILIES:
        mine = [r for r in rows if r["family"] == family]
        steps = runs.read_jsonl(Path(mine[0]["folder"]) / runs.STEPS_FILE)
        lr_ax.plot([s["step"] for s in steps], [s["lr"] for s in steps], label=family)
        curves = list(zip(*(r["val_accuracy"] for r in mine), strict=True))
        epochs = range(1, len(curves) + 1)
        acc_ax.plot(epochs, [statistics.median(c) for c in curves], "o-", label=family)
    lr_ax.set(xlabel="update", ylabel="learning rate", title="The schedules (1 warmup epoch)")
    acc_ax.set(xlabel="epoch", ylabel="validation accuracy (median of seeds)",
               title="Fashion-MNIST, resnet10t, 15k images")  # fmt: skip
    acc_ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)

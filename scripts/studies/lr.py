"""The lecture's first figure on Fashion-MNIST: loss curves of a very high, high, low and good LR.

The good LR is `recipes check`'s range-test suggestion (a decade below the loss minimum); high is
the LR at that minimum, very high ten times it, low a hundredth of the good one. A resnet10t at
32 px trains with SGD (momentum 0.9) at a constant LR on a 10,000-image subset for 3 epochs
(234 updates), 3 seeds per LR; validation and test on the full 5,000 and 10,000 images.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

from studies import common

MODEL = ["--model_name", "resnet10t", "--mixed_precision", "bf16", "--channels_last", "true"]
SGD = ["--optimizer", "sgd", "--momentum", "0.9", "--weight_decay", "5e-4", "--max_grad_norm", "0"]


def base(quick: bool) -> list[str]:
    """The runs' shared recipe: the subset, SGD at a constant LR, a loss logged every update."""
    samples, epochs = ("1000", "1") if quick else ("10000", "3")
    return [*common.FASHION, *MODEL, *SGD, "--max_train_samples", samples, "--num_epochs", epochs,
            "--lr_scheduler", "constant", "--per_device_train_batch_size", "128",
            "--logging_steps", "1", "--label_smoothing", "0"]  # fmt: skip


def learning_rates(found: dict[str, float]) -> dict[str, float]:
    """The four LRs of the lecture's sketch, placed by the range test."""
    good = found["suggested_lr"] or found["lr_at_min"] / 10
    rates = {"very high": found["lr_at_min"] * 10, "high": found["lr_at_min"]}
    return {**rates, "good": good, "low": good / 100}


def curve(folder: Path) -> list[float]:
    """Training loss per update; a run stopped on a non-finite loss ends early."""
    from recipes.core import runs

    return [r["loss"] for r in runs.read_jsonl(folder / runs.STEPS_FILE)]


def train(folder: Path, overrides: list[str]) -> dict:
    """One run; a diverged run (stopped on a non-finite loss) is a result too."""
    from recipes.core.errors import RecipeError

    def diverged() -> dict:
        try:
            return common.train(folder, overrides)
        except RecipeError as error:
            return {"diverged": str(error), "test": {"accuracy": math.nan}}

    return common.resumable(folder / "outcome", diverged)


def run(out: Path, work: Path, quick: bool = False) -> None:
    """Train each LR over the seeds; draw mean loss against updates; tabulate the spread."""
    found = common.range_test(work, base(quick), quick)
    seeds = (0,) if quick else (0, 1, 2)
    rows, curves = [], {}
    for name, lr in learning_rates(found).items():
        for seed in seeds:
            folder = work / f"{name.replace(' ', '-')}-{seed}"
            result = train(
                folder, [*base(quick), "--learning_rate", f"{lr:.3g}", "--seed", str(seed)]
            )
            curves.setdefault(name, []).append(curve(folder))
            rows.append({"name": name, "lr": lr, "seed": seed, **flatten(result)})
    draw(curves, learning_rates(found), out / "lr_losses.png")
    common.write(out, "lr_losses", summary(rows, found), rows)


def flatten(result: dict) -> dict:
    """The numbers the table needs from one run's outcome."""
    return {
        "test_accuracy": result["test"]["accuracy"],
        "train_loss": result.get("train_loss", math.nan),
        "diverged": "diverged" in result,
    }


def summary(rows: list[dict], found: dict[str, float]) -> str:
    """One line per LR: its value, runs diverged, final training loss and test accuracy."""
    lines = []
    for name in dict.fromkeys(r["name"] for r in rows):
        mine = [r for r in rows if r["name"] == name]
        ok = [r for r in mine if not r["diverged"]]
        lines.append([name, f"{mine[0]['lr']:.3g}", f"{len(mine) - len(ok)}/{len(mine)}",
                      common.spread(r["train_loss"] for r in ok) if ok else "-",
                      common.spread(r["test_accuracy"] for r in ok) if ok else "-"])  # fmt: skip
    header = ["LR", "value", "diverged", "last-epoch training loss", "test accuracy"]
    note = (f"Range test: loss minimum at LR {found['lr_at_min']:.3g}, suggested LR "
            f"{found['suggested_lr']:.3g}.\n\n")  # fmt: skip
    return note + common.table(header, lines)


def draw(curves: dict[str, list[list[float]]], rates: dict[str, float], path: Path) -> None:
    """Median training loss against updates over the seeds, one line per LR, log scale."""
    plt = common.pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for name, runs in curves.items():
        length = min(len(c) for c in runs)
        median = [min(statistics.median(c[i] for c in runs), 10.0) for i in range(length)]
        stopped = ", diverged" if length < max(len(c) for c in curves["good"]) else ""
        ax.plot(range(1, length + 1), median, label=f"{name} LR ({rates[name]:.2g}{stopped})")
    ax.set(xlabel="update", ylabel="training loss (median over seeds, clipped at 10)",
           yscale="log", title="Four learning rates on Fashion-MNIST (SGD, resnet10t)")  # fmt: skip
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)

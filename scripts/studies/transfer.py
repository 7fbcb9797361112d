"""Transfer learning, the lecture's 2x2 table (data size x similarity), and "a better source model
transfers better" (Kornblith et al. 2019), measured on Fashion-MNIST.

Source: one resnet10t (in_chans=1, 32 px, bf16 + channels_last) pretrained on Fashion-MNIST
classes 0-4 (T-shirt/top, Trouser, Pullover, Dress, Coat), all 27,500 training images, 3 epochs.
Targets: similar = Fashion-MNIST classes 5-9 (Sandal, Shirt, Sneaker, Bag, Ankle boot; 27,500
train / 2,500 validation / 5,000 test; 28 px resized to 32); different = scikit-learn digits
(8x8, upscaled to 32 px RGB by the loader; 1,257 / 270 / 270). The package cannot load a 1-channel
checkpoint for 3-channel data, so the digits runs use the backbone with its 1-channel stem
repeated over the 3 channels and divided by 3 (`recipes.transfer.channels`): a gray RGB image
gives the grayscale model's activations (to 1e-3: RGB mean/std average to the gray ones).
Data sizes: 5 and 20 labels per class (little data: 3 seeds each) and all labels (2 seeds). The
few labelled examples are the same for every seed (`train_per_class` takes a fixed subset), so
the spread is that of training, not of the choice of examples; the probes are deterministic.
Methods (`recipes.transfer.study.method_overrides`; one budget of optimizer steps per cell):
  scratch         random init, every layer trained;
  linear_probe    the frozen backbone's pooled features, logistic regression (L2 on validation);
  stage_probe     the same on each earlier stage's pooled features (stem, layer1-3), the stage
                  best on validation (`recipes.transfer.stage_probe`);
  finetune        from the backbone, new head, backbone LR x 0.1;
  probe_finetune  linear probe first (10 L-BFGS epochs), then the fine-tune (LP-FT).
Schedules (short, for about 15 minutes on 2 CPU cores; AdamW 3e-3, cosine, the recipe defaults):
5/20 labels per class: batch 16, whole epochs up to about 40 updates (Fashion 20 x 2 and 6 x 7,
digits 10 x 4 and 4 x 13); all labels: batch 64, Fashion 1 epoch (430 updates), digits 10 epochs
(200 updates). The best epoch on validation is kept (the whole validation split, in few-shot cells
too). Every method of a cell gets the same schedule; the probes fit 10 L-BFGS epochs.
Backbones (scatter): the same resnet10t pretrained on 500, 2,000 and 8,000 source images for one
epoch (3 seeds each) and the main source model (n=1); transfer = linear-probe test accuracy on
Fashion 5-9 (5,000 training images) and on all of digits. Same architecture, less training:
source accuracy is varied by budget, not by architecture as in Kornblith et al.
quick=True: 600 source images, 5 labels per class and a 300-image "all", 4 updates, one seed.
"""

from __future__ import annotations

import math
import shutil
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from studies import common

MODEL = "resnet10t"
SPEED = ["--model_name", MODEL, "--mixed_precision", "bf16", "--channels_last", "true"]
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")  # fmt: skip
SOURCE = [*common.FASHION, "--classes", *FASHION_CLASSES[:5]]
TARGETS = {
    "similar": [*common.FASHION, "--classes", *FASHION_CLASSES[5:]],
    "different": ["--dataset", "digits", "--image_size", "32", "--report_to", "none"],
}
TARGET_NAMES = {"similar": "Fashion-MNIST 5-9", "different": "digits"}
METHODS = ("scratch", "linear_probe", "stage_probe", "finetune", "probe_finetune")
LECTURE = {  # (similarity, little data) -> the methods the lecture's table recommends
    ("similar", True): (("linear_probe",), "linear classifier on the top layer"),
    ("similar", False): (("finetune", "probe_finetune"), "fine-tune a few layers"),
    ("different", True): (("stage_probe",), "linear classifiers from different stages"),
    ("different", False): (("finetune", "probe_finetune"), "fine-tune a larger number of layers"),
}


@dataclass(frozen=True)
class Plan:
    """How big each part of the study is."""

    source_images: int = 0  # 0: all 27,500
    source_epochs: int = 3
    shots: tuple[str, ...] = ("5", "20", "all")
    seeds_small: int = 3
    seeds_all: int = 2
    few_updates: int = 40
    few_batch: int = 16
    all_epochs: dict[str, int] = field(default_factory=lambda: {"similar": 1, "different": 10})
    all_limit: int = 0  # training images of an "all" cell (0: every one)
    backbones: tuple[int, ...] = (500, 2000, 8000)  # source images, one epoch each
    backbone_seeds: int = 3
    probe_images: int = 5000  # Fashion 5-9 training images of the backbone probes


FULL = Plan()
QUICK = Plan(600, 1, ("5", "all"), 1, 1, 4, 16, {"similar": 1, "different": 1}, 300,
             (150, 300), 1, 300)  # fmt: skip


def train(folder: Path, overrides: list[str]) -> dict[str, Any]:
    """`common.train`, then the finished run's resume checkpoints go (60 MB an epoch)."""
    result = common.train(folder, overrides)
    shutil.rmtree(folder / "checkpoints", ignore_errors=True)
    return result


def num_train(overrides: list[str]) -> tuple[int, int]:
    """Training images and channels of a data configuration."""
    from recipes.core.config import parse_config
    from recipes.core.data import load_image_data

    data = load_image_data(parse_config(None, overrides).data)
    return len(data.splits["train"]), data.channels


def checkpoint_for(target: str, source_run: Path) -> str:
    """The source run's best model as the target's data needs it: with the target's channels
    (digits are RGB), adapted once into a folder beside the run."""
    from recipes.transfer.channels import match_channels

    channels = num_train(TARGETS[target])[1]
    adapted = source_run.parent / f"{source_run.name}-{channels}ch"
    best = source_run / "best_model"
    outcome = common.resumable(
        adapted, lambda: {"checkpoint": str(match_channels(best, channels, adapted / "model"))}
    )
    return outcome["checkpoint"]


def pretrain(folder: Path, images: int, epochs: int, seed: int) -> dict[str, Any]:
    """One source model on Fashion-MNIST classes 0-4."""
    subset = ["--max_train_samples", str(images)] if images else []
    args = ["--num_epochs", str(epochs), "--seed", str(seed)]
    return train(folder, [*SOURCE, *SPEED, *subset, *args])


def cell_data(target: str, shots: str, plan: Plan) -> tuple[list[str], int]:
    """A cell's data overrides and batch size."""
    if shots != "all":
        return [*TARGETS[target], "--train_per_class", shots], plan.few_batch
    limit = ["--max_train_samples", str(plan.all_limit)] if plan.all_limit else []
    return [*TARGETS[target], *limit], 64


def run_method(folder: Path, method: str, data: list[str], checkpoint: str, updates: int,
               batch: int, seed: int) -> dict[str, Any]:  # fmt: skip
    """One method on one cell with one seed."""
    from recipes.transfer.study import PROBE_EPOCHS, method_overrides

    base = [*data, *SPEED, "--seed", str(seed), "--per_device_train_batch_size", str(batch)]
    if method == "stage_probe":
        from recipes.core.config import parse_config
        from recipes.transfer.stage_probe import stage_probe

        overrides = [*base, "--checkpoint", checkpoint, "--num_epochs", str(PROBE_EPOCHS)]
        config = parse_config(None, [*overrides, "--output_dir", str(folder)])
        return common.resumable(folder, lambda: stage_probe(config))
    n = num_train(data)[0]
    return train(folder, [*base, *method_overrides(method, checkpoint, updates, n, batch)])


def run_cells(work: Path, plan: Plan, checkpoints: dict[str, str]) -> list[dict[str, Any]]:
    """Every target x data size x method x seed; one row per run."""
    rows = []
    for target in TARGETS:
        for shots in plan.shots:
            data, batch = cell_data(target, shots, plan)
            cache = ["--feature_cache_dir", str(work / "features" / f"{target}-{shots}")]
            updates = plan.few_updates
            if shots == "all":
                updates = plan.all_epochs[target] * math.ceil(num_train(data)[0] / batch)
            seeds = plan.seeds_all if shots == "all" else plan.seeds_small
            for method in METHODS:
                for seed in range(seeds):
                    folder = work / "cells" / f"{target}-{shots}" / f"{method}-seed{seed}"
                    result = run_method(folder, method, [*data, *cache], checkpoints[target],
                                        updates, batch, seed)  # fmt: skip
                    rows.append(row(target, shots, method, seed, result))
    return rows


def row(target: str, shots: str, method: str, seed: int, result: dict) -> dict[str, Any]:
    """One run as a row of the study's JSON."""
    return {
        "target": target,
        "shots": shots,
        "method": method,
        "seed": seed,
        "val_accuracy": result["best_val_accuracy"],
        "test_accuracy": result["test"]["accuracy"],
        "test_nll": result["test"]["nll"],
        "stage": result.get("stage"),
    }


def accuracies(rows: list[dict], **match: Any) -> list[float]:
    """Test accuracies of the rows that match."""
    return [r["test_accuracy"] for r in rows if all(r[k] == v for k, v in match.items())]


def ranking(rows: list[dict], target: str, shots: str) -> list[tuple[str, float, float]]:
    """Methods from best to worst mean test accuracy: (method, mean, std)."""
    stats = []
    for method in METHODS:
        values = accuracies(rows, target=target, shots=shots, method=method)
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        stats.append((method, statistics.mean(values), std))
    return sorted(stats, key=lambda s: -s[1])


def verdict(rows: list[dict], target: str, shots: str) -> str:
    """The cell's winner, whether its lead is beyond the spread, and the lecture's advice."""
    ranked = ranking(rows, target, shots)
    (best, mean, std), (second, mean2, std2) = ranked[0], ranked[1]
    picks = LECTURE[(target, shots != "all")][0]
    lead = "clear lead" if mean - mean2 > std + std2 else f"within the spread of {second}"
    method, mean3, std3 = next(r for r in ranked if r[0] in picks)
    agree = "agrees" if best in picks else f"lecture's {method}: {mean3:.3f} ± {std3:.3f}"
    if best not in picks and mean - mean3 <= std + std3:
        agree += ", within the spread"
    return f"**{best}** {mean:.3f} ± {std:.3f} ({lead}; {agree})"


def stage_note(rows: list[dict], target: str, shots: str) -> str:
    """Which earlier stage the stage probe chose (over the seeds)."""
    stages = [r["stage"] for r in rows if (r["target"], r["shots"], r["method"]) ==
              (target, shots, "stage_probe")]  # fmt: skip
    return ", ".join(sorted(set(stages)))


def markdown(rows: list[dict], plan: Plan) -> str:
    """The per-method table and the lecture's table filled with what won."""
    header = ["target", "labels/class", *METHODS, "stage chosen"]
    lines = []
    for target in TARGETS:
        for shots in plan.shots:
            cells = [common.spread(accuracies(rows, target=target, shots=shots, method=m))
                     for m in METHODS]  # fmt: skip
            lines.append([TARGET_NAMES[target], shots, *cells, stage_note(rows, target, shots)])
    text = "## Transfer: test accuracy by method (mean ± std over seeds)\n\n"
    text += common.table(header, lines)
    text += "\n## The lecture's table, filled with what won (test accuracy)\n\n"
    little = [s for s in plan.shots if s != "all"]
    grid = []
    for target in TARGETS:
        small = "<br>".join(f"{s}/class: {verdict(rows, target, s)}" for s in little)
        large = verdict(rows, target, "all") if "all" in plan.shots else ""
        advice = [LECTURE[(target, flag)][1] for flag in (True, False)]
        grid.append([f"{target} ({TARGET_NAMES[target]})", small, large])
        grid.append([f"lecture, {target}", advice[0], advice[1]])
    text += common.table(["", "little data (5 / 20 labels per class)", "a lot (all)"], grid)
    return text


def plot_cells(rows: list[dict], plan: Plan, path: Path) -> None:
    """Test accuracy against labels per class, one panel per target, one line per method."""
    plt = common.pyplot()
    fig, axes = plt.subplots(1, len(TARGETS), figsize=(11, 4), sharey=False)
    for ax, target in zip(axes, TARGETS, strict=True):
        for method in METHODS:
            stats = [accuracies(rows, target=target, shots=s, method=method) for s in plan.shots]
            means = [statistics.mean(v) for v in stats]
            stds = [statistics.stdev(v) if len(v) > 1 else 0.0 for v in stats]
            ax.errorbar(range(len(plan.shots)), means, yerr=stds, marker="o", capsize=3,
                        label=method)  # fmt: skip
        ax.set_xticks(range(len(plan.shots)), plan.shots)
        ax.set(xlabel="labels per class", ylabel="test accuracy",
               title=f"{target}: Fashion 0-4 -> {TARGET_NAMES[target]}")  # fmt: skip
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def backbone_runs(work: Path, plan: Plan) -> list[tuple[str, int, int, Path]]:
    """(name, source images (0: the main source model), seed, folder) of every backbone."""
    runs = [(f"{n} images, 1 epoch", n, seed, work / "backbones" / f"src{n}-seed{seed}")
            for n in plan.backbones for seed in range(plan.backbone_seeds)]  # fmt: skip
    epochs = f"{plan.source_epochs} epoch{'s' if plan.source_epochs > 1 else ''}"
    main = f"main ({plan.source_images or 27500} images, {epochs})"
    return [*runs, (main, 0, 0, work / "backbones" / "main")]


def run_backbones(work: Path, plan: Plan, main: dict[str, Any]) -> list[dict[str, Any]]:
    """Source models of different accuracy, each linear-probed on both targets."""
    from recipes.transfer.study import PROBE_EPOCHS

    rows = []
    for name, images, seed, folder in backbone_runs(work, plan):
        source_run = folder / "source" if images else work / "source"
        source = pretrain(source_run, images, 1, seed) if images else main
        entry = {"backbone": name, "seed": seed, "source_accuracy": source["test"]["accuracy"]}
        for target in TARGETS:
            subset = ["--max_train_samples", str(plan.probe_images)] if target == "similar" else []
            overrides = [*TARGETS[target], *subset, *SPEED, "--mode", "linear_probe",
                         "--checkpoint", checkpoint_for(target, source_run),
                         "--num_epochs", str(PROBE_EPOCHS),
                         "--feature_cache_dir", str(folder / "features")]  # fmt: skip
            probe = train(folder / f"probe-{target}", overrides)
            entry[f"{target}_accuracy"] = probe["test"]["accuracy"]
        rows.append(entry)
    return rows


def backbones_markdown(rows: list[dict]) -> str:
    """Source accuracy against transfer accuracy, per backbone (mean ± std over seeds)."""
    names = list(dict.fromkeys(r["backbone"] for r in rows))
    columns = ["source_accuracy", *(f"{t}_accuracy" for t in TARGETS)]
    lines = [[name, *(common.spread(r[c] for r in rows if r["backbone"] == name) for c in columns)]
             for name in names]  # fmt: skip
    header = ["backbone (resnet10t on Fashion 0-4)", "source test accuracy (Fashion 0-4)",
              *(f"linear-probe test accuracy, {TARGET_NAMES[t]}" for t in TARGETS)]  # fmt: skip
    text = "## Better source model, better transfer? (Kornblith et al. 2019)\n\n"
    text += common.table(header, lines) + "\n"
    source = [r["source_accuracy"] for r in rows]
    for target in TARGETS:
        ours = [r[f"{target}_accuracy"] for r in rows]
        varied = len(set(source)) > 1 and len(set(ours)) > 1
        r = f"{statistics.correlation(source, ours):+.2f}" if varied else "n/a"
        text += f"- {TARGET_NAMES[target]}: Pearson r = {r} over {len(rows)} backbone runs\n"
    return text


def plot_backbones(rows: list[dict], path: Path) -> None:
    """Transfer accuracy against source accuracy, mean ± std per backbone, a panel per target."""
    plt = common.pyplot()
    fig, axes = plt.subplots(1, len(TARGETS), figsize=(10, 4))
    names = list(dict.fromkeys(r["backbone"] for r in rows))
    for ax, target in zip(axes, TARGETS, strict=True):
        for index, name in enumerate(names):
            mine = [r for r in rows if r["backbone"] == name]
            x = [r["source_accuracy"] for r in mine]
            y = [r[f"{target}_accuracy"] for r in mine]
            ax.errorbar(statistics.mean(x), statistics.mean(y), marker="o", capsize=3,
                        xerr=statistics.stdev(x) if len(x) > 1 else 0,
                        yerr=statistics.stdev(y) if len(y) > 1 else 0,
                        color=f"C{index}", label=name)  # fmt: skip
        ax.set(xlabel="source test accuracy (Fashion-MNIST 0-4)",
               ylabel="linear-probe test accuracy", title=f"-> {TARGET_NAMES[target]}")  # fmt: skip
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle("Better source model, better transfer? (resnet10t, less or more pretraining)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(out: Path, work: Path, quick: bool = False) -> None:
    """The 2x2 table and the backbone scatter; finished runs in `work` are reused."""
    plan, start = QUICK if quick else FULL, time.perf_counter()
    say = lambda part: print(f"transfer: {part} done, {time.perf_counter() - start:.0f} s")  # noqa: E731
    main = pretrain(work / "source", plan.source_images, plan.source_epochs, 0)
    checkpoints = {target: checkpoint_for(target, work / "source") for target in TARGETS}
    say("source model")
    rows = run_cells(work, plan, checkpoints)
    say("2x2 table runs")
    backbone_rows = run_backbones(work, plan, main)
    say("backbones")
    intro = (
        f"Source model: {MODEL} on Fashion-MNIST classes 0-4, test accuracy "
        f"{main['test']['accuracy']:.4f}. Design: scripts/studies/transfer.py's docstring.\n\n"
    )
    common.write(out, "transfer", intro + markdown(rows, plan), rows)
    plot_cells(rows, plan, out / "transfer.png")
    common.write(out, "transfer_backbones", backbones_markdown(backbone_rows), backbone_rows)
    plot_backbones(backbone_rows, out / "transfer_backbones.png")

"""Data-parallel scaling on Fashion-MNIST: images/s of 1 and 2 processes on one global batch.

resnet10t at 32 px, fp32, global batch 64, 3 epochs of a 4,096-image subset without
augmentation; a layout's rate is the training images of an epoch over the median epoch's
update time (`train_seconds`, validation excluded) after the first. Layouts: 1 process on
1 thread (one core: the unit of perfect scaling), 1 process on 2 threads, 2 DDP processes on
1 thread each (gloo), and 2 DeepSpeed ZeRO-2 processes. The layouts alternate for 3 rounds.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from largebatch_study import free_port

from studies import common

LAYOUTS = {  # name -> (processes, threads each, accelerate config or None)
    "1 process x 1 thread": (1, 1, None),
    "1 process x 2 threads": (1, 2, None),
    "2 processes (DDP) x 1 thread": (2, 1, "cpu_2proc.yaml"),
    "2 processes (ZeRO-2) x 1 thread": (2, 1, "deepspeed_zero2.yaml"),
}
BATCH = 64


def command(layout: str, folder: Path, quick: bool) -> list[str]:
    """`recipes train` in one process, or under `accelerate launch` with the layout's config."""
    processes, _, config = LAYOUTS[layout]
    samples, epochs = ("512", "2") if quick else ("4096", "3")
    train = ["-m", "recipes", "train", *common.FASHION, "--model_name", "resnet10t",
             "--augment", "false", "--max_train_samples", samples, "--num_epochs", epochs,
             "--per_device_train_batch_size", str(BATCH // processes),
             "--output_dir", str(folder)]  # fmt: skip
    if config is None:
        return [sys.executable, *train]
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
              str(common.ROOT / "accelerate_configs" / config), "--num_processes", str(processes),
              "--main_process_port", free_port()]  # fmt: skip
    return [*launch, *train]


def rate(layout: str, folder: Path, quick: bool) -> dict:
    """One measured run of a layout (resumable): images/s of its median epoch after the first."""

    def run() -> dict:
        threads = str(LAYOUTS[layout][1])
        env = {**os.environ, "OMP_NUM_THREADS": threads}
        log = folder.with_suffix(".log")
        folder.parent.mkdir(parents=True, exist_ok=True)
        with log.open("w") as out:
            done = subprocess.run(command(layout, folder, quick), cwd=common.ROOT, env=env,
                                  stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
        if done.returncode:
            raise SystemExit(f"{layout} failed (exit {done.returncode}); see {log}")
        epochs = common.epochs(folder)
        images = json.loads((folder / "results.json").read_text())["train_examples"]
        seconds = statistics.median(e["train_seconds"] for e in epochs[1:])
        return {"layout": layout, "images_per_second": images / seconds}

    return common.resumable(folder.with_name(folder.name + "-done"), run)


def run(out: Path, work: Path, quick: bool = False) -> None:
    """Every layout for each round; the table and bars against perfect scaling."""
    rounds = 1 if quick else 3
    rows = []
    for index in range(rounds):
        for number, layout in enumerate(LAYOUTS):
            rows.append({**rate(layout, work / f"layout{number}-round{index}", quick),
                         "round": index})  # fmt: skip
    draw(rows, out / "scaling.png")
    common.write(out, "scaling", summary(rows), rows)


def medians(rows: list[dict]) -> dict[str, float]:
    """Median images/s of each layout over the rounds."""
    return {name: statistics.median(r["images_per_second"] for r in rows if r["layout"] == name)
            for name in LAYOUTS}  # fmt: skip


def summary(rows: list[dict]) -> str:
    """Images/s per layout (spread over rounds) and its fraction of perfect scaling."""
    unit = medians(rows)["1 process x 1 thread"]
    lines = []
    for name, (processes, threads, _) in LAYOUTS.items():
        values = [r["images_per_second"] for r in rows if r["layout"] == name]
        cores = processes * threads
        lines.append([name, common.spread(values, digits=0),
                      f"{statistics.median(values) / unit:.2f}x",
                      f"{statistics.median(values) / (unit * cores):.0%}"])  # fmt: skip
    header = ["layout", "training images/s", "speed-up vs 1 core", "of perfect scaling"]
    return common.table(header, lines)


def draw(rows: list[dict], path: Path) -> None:
    """Median images/s per layout, with perfect scaling from one core drawn as a line."""
    plt = common.pyplot()
    rates = medians(rows)
    unit = rates["1 process x 1 thread"]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.barh(list(rates), list(rates.values()), color="tab:blue")
    ax.axvline(2 * unit, color="tab:red", linestyle="--", label="perfect scaling on 2 cores")
    ax.set(xlabel="training images/s (median of rounds)",
           title="Data parallelism on 2 CPU cores (resnet10t, batch 64)")  # fmt: skip
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)

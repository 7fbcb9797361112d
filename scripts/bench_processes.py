"""Throughput of 1 process with 2 threads against 2 processes with 1 thread each, same global batch.

Both run the engine on digits; images/s is the training set over the median epoch's wall time
after the first (training plus the same validation pass in both), so start-up is not counted.
The two layouts alternate for --repeats rounds; medians are reported.

    python scripts/bench_processes.py --model test_convnext --batch 64
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from machine import free_port

ROOT = Path(__file__).resolve().parents[1]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="test_convnext")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--batch", type=int, default=64, help="global batch")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    return parser.parse_args()


def images_per_second(out: Path, processes: int, opts: argparse.Namespace) -> float:
    """Train a few epochs; the training images over the median epoch's seconds after the first."""
    args = ["-m", "recipes", "train", "--report_to", "none", "--model_name", opts.model]
    args += ["--image_size", str(opts.size), "--num_epochs", str(opts.epochs), "--augment", "false"]
    args += [
        "--per_device_train_batch_size",
        str(opts.batch // processes),
        "--output_dir",
        str(out),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": str(2 // processes), "HF_HUB_OFFLINE": "1"}
    if processes == 1:
        command = [sys.executable, *args]
    else:
        config = ROOT / "accelerate_configs" / "cpu_2proc.yaml"
        command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config)]
        command += ["--main_process_port", free_port(), *args]
    subprocess.run(command, cwd=ROOT, env=env, check=True, capture_output=True)
    epochs = [json.loads(line) for line in (out / "epochs.jsonl").read_text().splitlines()]
    images = epochs[-1]["step"] // len(epochs) * opts.batch
    seconds = [b["seconds"] - a["seconds"] for a, b in zip(epochs, epochs[1:], strict=False)]
    return images / statistics.median(seconds)


def main() -> None:
    opts = parse_args()
    rates: dict[int, list[float]] = {1: [], 2: []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(opts.repeats):
            for processes in (1, 2):
                out = Path(tmp) / f"p{processes}-{i}"
                rates[processes].append(images_per_second(out, processes, opts))
    ratios = [two / one for one, two in zip(rates[1], rates[2], strict=True)]
    threads, processes = statistics.median(rates[1]), statistics.median(rates[2])
    print(f"{opts.model} at {opts.size} px, global batch {opts.batch}, {opts.repeats} rounds")
    print(f"1 process x 2 threads:   {threads:8.1f} images/s (median)")
    print(f"2 processes x 1 thread:  {processes:8.1f} images/s (median)")
    rounds = ", ".join(f"{r:.2f}" for r in ratios)
    print(f"processes / threads:     {statistics.median(ratios):8.2f} (rounds: {rounds})")


if __name__ == "__main__":
    main()

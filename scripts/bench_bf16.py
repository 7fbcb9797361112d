"""bf16 autocast + channels_last against fp32 training on this machine, through the engine.

Same model, data, schedule and epochs; prints training throughput (images/s over the training
epochs, evaluation excluded) and final validation accuracy of each, and the throughput ratio.

    python scripts/bench_bf16.py --model resnet18 --image-size 96 --epochs 3
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from recipes.core import runs
from recipes.core.config import parse_config
from recipes.training.engine import train


def run(base: list[str], extra: list[str], out: str) -> dict:
    """Train once; images/s over the whole epochs (their per-epoch evaluation included)."""
    config = parse_config(None, [*base, *extra, "--output_dir", out])
    start = time.perf_counter()
    results = train(config)
    wall = time.perf_counter() - start
    epochs = runs.read_jsonl(runs.run_dir(config) / runs.EPOCHS_FILE)
    seen = results["train_examples"] * len(epochs)
    train_seconds = epochs[-1]["seconds"]
    return {**results, "images_per_s": seen / train_seconds, "wall": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    base = ["--model_name", args.model, "--image_size", str(args.image_size), "--report_to", "none"]
    base += ["--num_epochs", str(args.epochs), "--learning_rate", "2e-3"]
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = run(base, ["--mixed_precision", "no"], f"{tmp}/fp32")
        bf16 = run(base, ["--mixed_precision", "bf16", "--channels_last", "true"], f"{tmp}/bf16")
    for name, r in (("fp32", fp32), ("bf16+channels_last", bf16)):
        print(
            f"{name:>20}: {r['images_per_s']:.1f} images/s (incl. per-epoch eval), "
            f"val accuracy {r['val_accuracy']:.4f}, wall {r['wall']:.1f}s"
        )
    print(f"throughput ratio bf16/fp32: {bf16['images_per_s'] / fp32['images_per_s']:.2f}")


if __name__ == "__main__":
    main()

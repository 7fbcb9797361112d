"""bf16 autocast + channels_last against fp32 training on this machine, through the engine.

Same model, data (Fashion-MNIST by default), schedule and epochs, in alternating rounds; prints
training throughput (images/s of the training epochs, evaluation excluded), final validation
accuracy of each, and the median throughput ratio. bf16 pays on CPUs with AVX-512 BF16 or AMX;
on AVX2 alone it does not.

    python scripts/bench_bf16.py --model resnet10t --image-size 32 --epochs 1 --train 20000
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile

from machine import cpu_name

from recipes.core import runs
from recipes.core.config import parse_config
from recipes.training.engine import train

PRECISIONS = {
    "fp32": ["--mixed_precision", "no"],
    "bf16+channels_last": ["--mixed_precision", "bf16", "--channels_last", "true"],
}


def run(base: list[str], extra: list[str], out: str) -> dict:
    """Train once; images/s over the training epochs alone (per-epoch evaluation excluded)."""
    config = parse_config(None, [*base, *extra, "--output_dir", out])
    results = train(config)
    epochs = runs.read_jsonl(runs.run_dir(config) / runs.EPOCHS_FILE)
    train_seconds = sum(e["train_seconds"] for e in epochs)
    return {**results, "images_per_s": results["train_examples"] * len(epochs) / train_seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="fashion_mnist")
    parser.add_argument("--model", default="resnet10t")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--train", type=int, default=20000, help="training images")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    print(f"CPU: {cpu_name()}")
    base = ["--dataset", args.dataset, "--model_name", args.model, "--report_to", "none"]
    base += ["--image_size", str(args.image_size), "--num_epochs", str(args.epochs)]
    base += ["--max_train_samples", str(args.train), "--learning_rate", "3e-3"]
    base += ["--per_device_train_batch_size", str(args.batch)]
    rows: dict[str, list[dict]] = {name: [] for name in PRECISIONS}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            for name, extra in PRECISIONS.items():
                rows[name].append(run(base, extra, f"{tmp}/{name}-{round_}"))
                r = rows[name][-1]
                print(f"round {round_} {name}: {r['images_per_s']:.0f} images/s, "
                      f"val {r['val_accuracy']:.4f}", flush=True)  # fmt: skip
    rate = {n: statistics.median(r["images_per_s"] for r in rs) for n, rs in rows.items()}
    acc = {n: statistics.median(r["val_accuracy"] for r in rs) for n, rs in rows.items()}
    for name in PRECISIONS:
        print(f"{name:>20}: {rate[name]:.0f} images/s (median), val accuracy {acc[name]:.4f}")
    print(f"throughput ratio bf16/fp32: {rate['bf16+channels_last'] / rate['fp32']:.2f}")


if __name__ == "__main__":
    main()

"""Linear probe with cached features against the engine running the frozen backbone every epoch.

Same backbone, data, epochs and process, side by side: wall time ratio and both accuracies.
    python scripts/bench_linear_probe.py --model_name resnet18 --image_size 64 --num_epochs 10
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import timm
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from recipes.cli import run_recipe  # noqa: E402
from recipes.config import parse_config  # noqa: E402
from recipes.models import save_model  # noqa: E402
from recipes.transfer_study import test_accuracy  # noqa: E402


def timed_run(overrides: list[str]) -> tuple[float, dict, float]:
    """Wall time of one run through the `recipes train` route, its results and test accuracy."""
    config = parse_config(None, overrides)
    start = time.perf_counter()
    results = run_recipe(config)
    seconds = time.perf_counter() - start
    return seconds, results, test_accuracy(config, Path(results["run_dir"]) / "best_model")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_name", default="resnet18")
    parser.add_argument("--image_size", type=int, default=64)
    parser.add_argument("--num_epochs", type=int, default=10)
    parser.add_argument("--checkpoint", help="backbone weights (default: seeded random init)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_probe_"))
    checkpoint = args.checkpoint
    if checkpoint is None:
        torch.manual_seed(0)
        model = timm.create_model(args.model_name, num_classes=10)
        config = timm.data.resolve_data_config({}, model=model)
        checkpoint = str(save_model(model, work / "backbone", [str(i) for i in range(10)], config))
    common = [
        "--report_to",
        "none",
        "--model_name",
        args.model_name,
        "--checkpoint",
        checkpoint,
        "--image_size",
        str(args.image_size),
        "--num_epochs",
        str(args.num_epochs),
        "--mode",
        "linear_probe",
        "--augment",
        "false",
        "--feature_cache_dir",
        str(work / "cache"),
    ]
    fast = timed_run([*common, "--output_dir", str(work / "cached")])
    again = timed_run([*common, "--output_dir", str(work / "cached_again")])
    slow = timed_run([*common, "--cached_features", "false", "--output_dir", str(work / "engine")])
    print(
        f"{args.model_name} at {args.image_size} px, {args.num_epochs} epochs, digits, "
        f"{torch.get_num_threads()} threads"
    )
    for name, (seconds, results, test) in (
        ("cached features", fast),
        ("cache reused", again),
        ("engine, frozen", slow),
    ):
        print(
            f"{name:16} {seconds:7.1f} s  val {results['best_val_accuracy']:.4f}  test {test:.4f}"
        )
    print(f"speed-up (engine / cached, cache built in the run): {slow[0] / fast[0]:.1f}x")
    print(f"speed-up (engine / cached, cache reused): {slow[0] / again[0]:.1f}x")
    print(f"test accuracy difference (cached - engine): {100 * (fast[2] - slow[2]):+.1f} points")


if __name__ == "__main__":
    main()

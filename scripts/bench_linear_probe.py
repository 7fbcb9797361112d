"""Linear probe with cached features against the engine running the frozen backbone every epoch.

The backbone is first trained on the source digit classes 0-4 (or given by --checkpoint); both
ways then learn the target classes 5-9 on it with the same data and epochs, side by side in one
process: wall time ratio and both test accuracies.
    python scripts/bench_linear_probe.py --model_name resnet18 --image_size 64 --num_epochs 10
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from recipes.transfer.study import run_overrides, test_accuracy  # noqa: E402

SOURCE, TARGET = ["0", "1", "2", "3", "4"], ["5", "6", "7", "8", "9"]


def timed_run(overrides: list[str]) -> tuple[float, dict, float]:
    """Wall time of one run through the `recipes train` route, its results and test accuracy."""
    start = time.perf_counter()
    config, results = run_overrides(overrides)
    seconds = time.perf_counter() - start
    return seconds, results, test_accuracy(config, Path(results["run_dir"]) / "best_model")


def pretrain(args: argparse.Namespace, work: Path) -> str:
    """A backbone that has learned something: a run on the source classes, not timed."""
    _, results = run_overrides(
        [
            *("--report_to", "none", "--model_name", args.model_name),
            *("--image_size", str(args.image_size), "--classes", *SOURCE),
            *("--num_epochs", str(args.source_epochs), "--output_dir", str(work / "source")),
        ]
    )
    print(f"source backbone: val accuracy {results['best_val_accuracy']:.4f} on classes 0-4")
    return str(work / "source" / "best_model")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_name", default="resnet18")
    parser.add_argument("--image_size", type=int, default=64)
    parser.add_argument("--num_epochs", type=int, default=10)
    parser.add_argument("--checkpoint", help="backbone weights (default: trained on 0-4 here)")
    parser.add_argument("--source_epochs", type=int, default=5)
    parser.add_argument(
        "--engine_lr",
        default="0.1",
        help="the engine's head LR; of 0.003 (the recipe's), 0.01, 0.03 and 0.1 the best on val",
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_probe_"))
    checkpoint = args.checkpoint or pretrain(args, work)
    common = [
        "--classes",
        *TARGET,
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
    slow = timed_run(
        [
            *("--cached_features", "false", "--learning_rate", args.engine_lr),
            *("--output_dir", str(work / "engine")),
        ]
        + common
    )
    print(
        f"{args.model_name} at {args.image_size} px, {args.num_epochs} epochs, digits 5-9, "
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

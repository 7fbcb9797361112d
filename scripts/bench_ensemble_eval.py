"""Ensemble evaluation in one pass over the data against evaluating the members one by one.

One pass decodes and transforms each image once and runs the N members on it; one by one
repeats the data pipeline N times. Both are timed here side by side, in the same process.

    python scripts/bench_ensemble_eval.py --members 5 --image_size 64
    python scripts/bench_ensemble_eval.py --models runs/x-ensemble/members/*/model
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import timm
import torch

from recipes.core.arguments import DataArguments
from recipes.core.data import load_image_data
from recipes.core.models import save_model
from recipes.ensembles.ensemble import Ensemble, build_ensemble, eval_loader, predict


def random_members(folder: Path, count: int, model_name: str, size: int) -> list[Path]:
    """Untrained members: evaluation costs the same whatever the weights."""
    config = dict(input_size=(3, size, size), mean=(0.5,) * 3, std=(0.5,) * 3, crop_pct=1.0)
    labels = [str(d) for d in range(10)]
    return [
        save_model(timm.create_model(model_name, num_classes=10), folder / f"m{i}", labels, config)
        for i in range(count)
    ]


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=5)
    parser.add_argument("--models", nargs="+", help="saved model folders instead of random ones")
    parser.add_argument("--model_name", default="test_convnext")
    parser.add_argument("--image_size", type=int, default=32)
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    data = load_image_data(DataArguments())
    with tempfile.TemporaryDirectory() as tmp:
        dirs = [Path(d) for d in args.models or []] or random_members(
            Path(tmp), args.members, args.model_name, args.image_size
        )
        ensemble = build_ensemble(dirs).to(device)
    size = args.image_size

    def loader():
        return eval_loader(data, "train", size, args.batch_size)

    def one_pass():
        predict(ensemble, loader(), device)

    def one_by_one():
        for member in ensemble.members:
            predict(Ensemble([member]), loader(), device)

    def data_only():
        for _ in loader():
            pass

    one_pass()  # warm-up: first-call allocations and kernel selection
    best = {name: float("inf") for name in ("one pass", "one by one", "data pipeline alone")}
    for _ in range(args.repeats):
        for name, fn in zip(best, (one_pass, one_by_one, data_only), strict=True):
            best[name] = min(best[name], timed(fn))
    images = len(data.splits["train"])
    print(f"{len(dirs)} members, {images} images at {size}px, batch {args.batch_size}, {device}")
    for name, seconds in best.items():
        print(f"  {name:<20} {seconds:7.3f} s  ({images / seconds:8.0f} images/s)")
    print(f"  one by one / one pass = {best['one by one'] / best['one pass']:.2f}x")


if __name__ == "__main__":
    main()

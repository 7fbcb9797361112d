"""Engine overhead: `recipes.training.engine.train` against a minimal hand-written PyTorch loop.

Both train the same timm model on the same data, batch, optimizer, schedule and number of
updates, and both evaluate on the validation split after each epoch. They run alternately in
one process; the script prints each time, the medians and their ratio (goal: at most 1.05).

    python scripts/bench_engine.py --model resnet10t --epochs 3 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import torch

from recipes.core.config import parse_config
from recipes.core.data import build_transforms, make_loader
from recipes.schedules import build_optimizer, build_scheduler
from recipes.training.engine import train
from recipes.training.setup import build_setup


def hand_loop(config) -> float:
    """The same training written plainly: no Accelerate, no checkpoints, no logging."""
    t = config.training
    torch.manual_seed(t.seed)
    setup = build_setup(config)
    model = setup.model
    train_tf, eval_tf = build_transforms(config.data, setup.data_config)
    train_loader = make_loader(setup.data, "train", train_tf, t.per_device_train_batch_size, True)
    val_loader = make_loader(setup.data, "validation", eval_tf, t.per_device_eval_batch_size, False)
    optimizer = build_optimizer(model, t.optimizer, t.learning_rate, t.weight_decay)
    total = t.num_epochs * len(train_loader)
    scheduler = build_scheduler(t.lr_scheduler, optimizer, total)
    for _ in range(t.num_epochs):
        model.train()
        for images, labels in train_loader:
            loss = torch.nn.functional.cross_entropy(model(images), labels)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), t.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
        model.eval()
        with torch.no_grad():
            correct = sum((model(x).argmax(-1) == y).sum().item() for x, y in val_loader)
    return correct / len(setup.data.splits["validation"])


def timed(function, *args) -> tuple[float, float]:
    start = time.perf_counter()
    value = function(*args)
    return time.perf_counter() - start, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet10t")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    base = ["--model_name", args.model, "--num_epochs", str(args.epochs), "--report_to", "none"]
    base += ["--warmup_epochs", "0"]
    engine_times, hand_times = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            config = parse_config(None, [*base, "--output_dir", f"{tmp}/run{repeat}"])
            hand_s, hand_acc = timed(hand_loop, config)
            engine_s, results = timed(train, config)
            hand_times.append(hand_s)
            engine_times.append(engine_s)
            print(
                f"repeat {repeat}: engine {engine_s:.2f}s (val acc {results['val_accuracy']:.3f}), "
                f"hand loop {hand_s:.2f}s (val acc {hand_acc:.3f})",
                flush=True,
            )
    engine, hand = statistics.median(engine_times), statistics.median(hand_times)
    print(f"median engine {engine:.2f}s, hand loop {hand:.2f}s, ratio {engine / hand:.3f}")


if __name__ == "__main__":
    main()

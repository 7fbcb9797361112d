"""The input pipeline on Fashion-MNIST at 32 px: loader alone, engine, and the raw-loop limit.

For each model, measured side by side in alternating rounds (medians printed):
  (a) the loader alone, images/s: the decoded-once batch pipeline against the PIL path it
      replaced (timm's per-image transforms on PIL images);
  (b) the engine's training images/s (`recipes.training.engine`, one epoch of updates);
  (c) a raw PyTorch loop over the same preloaded uint8 tensors with the same augmentation,
      model, optimizer and precision: the limit.
Goals: loader >= 5x the training step's rate; engine >= 0.95 of the raw loop.

    python scripts/bench_input.py --models resnet10t test_convnext --train 10000 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import torch
from datasets import Dataset, Features, Image, Value
from machine import cpu_name
from PIL import Image as PILImage
from timm.data import create_transform

from recipes.core.config import parse_config
from recipes.core.data import build_transforms, make_loader
from recipes.schedules import build_optimizer
from recipes.training import engine
from recipes.training.setup import build_setup


def rate(count: int, seconds: float) -> float:
    return count / seconds


def loader_rate(loader) -> float:
    """Images per second of iterating a loader once, doing nothing with the batches."""
    start, count = time.perf_counter(), 0
    for images, _ in loader:
        count += len(images)
    return rate(count, time.perf_counter() - start)


def pil_loader(setup, config, batch: int):
    """The path this project used before: PIL images, timm's transforms image by image."""
    images, labels = setup.data.decoded("train", config.data.image_size)
    pil = [PILImage.fromarray(x[0].numpy()).convert("RGB") for x in images]
    split = Dataset.from_dict(
        {"image": pil, "label": labels.tolist()},
        Features({"image": Image(), "label": Value("int64")}),
    )
    transform = create_transform(
        input_size=(3, config.data.image_size, config.data.image_size), is_training=True,
        scale=(config.data.crop_scale, 1.0), hflip=config.data.hflip, interpolation="bilinear",
        crop_pct=1.0,
    )  # fmt: skip

    def collate(rows):
        return torch.stack([transform(r["image"].convert("RGB")) for r in rows]), None

    return torch.utils.data.DataLoader(split, batch_size=batch, shuffle=True, collate_fn=collate)


def engine_rate(config) -> float:
    """Training images/s of the engine's epoch loop (evaluation not counted)."""
    loop = engine.prepare(config)
    bar = engine.tqdm(disable=True)
    start = time.perf_counter()
    engine.train_epoch(loop, 0, bar, set())
    seconds = time.perf_counter() - start
    loop.accelerator.end_training()
    return rate(len(loop.setup.data.splits["train"]), seconds)


def raw_rate(config) -> float:
    """The same updates written plainly over preloaded uint8 tensors: the limit."""
    t = config.training
    torch.manual_seed(t.seed)
    setup = build_setup(config)
    model = setup.model.to(memory_format=torch.channels_last) if t.channels_last else setup.model
    transform = build_transforms(config.data, setup.data_config)[0]
    images, labels = setup.data.decoded("train", transform.size)
    optimizer = build_optimizer(model, t.optimizer, t.learning_rate, t.weight_decay)
    dtype = torch.bfloat16 if t.mixed_precision == "bf16" else torch.float32
    model.train()
    start = time.perf_counter()
    for index in torch.randperm(len(labels)).split(t.per_device_train_batch_size):
        x = transform(images[index])
        x = x.contiguous(memory_format=torch.channels_last) if t.channels_last else x
        with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
            loss = torch.nn.functional.cross_entropy(model(x).float(), labels[index])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), t.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return rate(len(labels), time.perf_counter() - start)


def bench_model(model: str, args, tmp: str) -> None:
    overrides = [
        "--dataset", "fashion_mnist", "--model_name", model, "--max_train_samples", str(args.train),
        "--report_to", "none", "--hflip", "0.5", "--crop_scale", "0.7", "--num_epochs", "1",
        "--mixed_precision", args.mixed_precision,
        "--channels_last", str(args.mixed_precision == "bf16"),
    ]  # fmt: skip
    rows: dict[str, list[float]] = {"loader": [], "pil loader": [], "engine": [], "raw loop": []}
    for round_ in range(args.rounds):
        config = parse_config(None, [*overrides, "--output_dir", f"{tmp}/{model}-{round_}"])
        setup = build_setup(config)
        transform = build_transforms(config.data, setup.data_config)[0]
        batch = config.training.per_device_train_batch_size
        rows["loader"].append(loader_rate(make_loader(setup.data, "train", transform, batch, True)))
        rows["pil loader"].append(loader_rate(pil_loader(setup, config, batch)))
        rows["engine"].append(engine_rate(config))
        rows["raw loop"].append(raw_rate(config))
        print(f"{model} round {round_}: " + ", ".join(f"{k} {v[-1]:,.0f}" for k, v in rows.items()))
    med = {k: statistics.median(v) for k, v in rows.items()}
    print(
        f"{model} medians (images/s): "
        + ", ".join(f"{k} {v:,.0f}" for k, v in med.items())
        + f"\n  loader / engine step {med['loader'] / med['engine']:.1f}x (goal >= 5), "
        f"loader / PIL loader {med['loader'] / med['pil loader']:.1f}x, "
        f"engine / raw loop {med['engine'] / med['raw loop']:.3f} (goal >= 0.95)",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["resnet10t", "test_convnext"])
    parser.add_argument("--train", type=int, default=10000, help="training images")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--mixed_precision", default="no", help="no or bf16")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_flush_denormal(True)
    print(f"CPU: {cpu_name()}; torch threads {torch.get_num_threads()}")
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            bench_model(model, args, tmp)


if __name__ == "__main__":
    main()

"""Images/s of the engine against a plain PyTorch loop: same model, data, bf16, channels_last.

Both train digits upscaled to --size for three epochs, each followed by a validation pass;
epochs 2-3 are timed. The engine's epochs also write its checkpoint and best model.

    python scripts/bench_gpu.py                                   # resnet50, 224 px, one GPU
    python scripts/bench_gpu.py --device cpu --model test_resnet --size 32 --steps 5
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from contextlib import contextmanager


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=19, help="updates per epoch (digits: <= 19)")
    parser.add_argument("--workers", type=int, default=8)
    return parser.parse_args()


def config_args(opts: argparse.Namespace, out: str) -> list[str]:
    return [
        "--report_to", "none", "--model_name", opts.model, "--image_size", str(opts.size),
        "--per_device_train_batch_size", str(opts.batch), "--num_epochs", "3",
        "--max_train_samples", str(opts.steps * opts.batch), "--augment", "false",
        "--mixed_precision", "bf16", "--channels_last", "true", "--num_workers", str(opts.workers),
        "--per_device_eval_batch_size", str(opts.batch), "--output_dir", out,
    ]  # fmt: skip


@contextmanager
def training_forwards(model_class: str):
    """Time stamps of every training-mode forward of the model: training-only throughput."""
    import torch

    stamps: list[float] = []

    def hook(module, args):
        if module.training and type(module).__name__ == model_class:
            stamps.append(time.perf_counter())

    handle = torch.nn.modules.module.register_module_forward_pre_hook(hook)
    try:
        yield stamps
    finally:
        handle.remove()


def training_rate(stamps: list[float], steps: int, batch: int) -> float:
    """Images/s from the first to the last forward of epochs 2 and 3 (no validation in between)."""
    spans = [stamps[e * steps + steps - 1] - stamps[e * steps] for e in (1, 2)]
    return 2 * (steps - 1) * batch / sum(spans)


def engine_rate(config, opts: argparse.Namespace) -> tuple[float, float]:
    """recipes.training.engine.train: (whole epochs, training only) images/s."""
    import timm

    from recipes.training.engine import train

    epochs = []
    model_class = type(timm.create_model(opts.model, pretrained=False)).__name__
    with training_forwards(model_class) as stamps:
        train(config, epoch_hook=lambda epoch, record: epochs.append(time.perf_counter()) and False)
    whole = 2 * config.data.max_train_samples / (epochs[2] - epochs[0])
    return whole, training_rate(stamps, opts.steps, opts.batch)


def plain_rate(config, opts: argparse.Namespace) -> tuple[float, float]:
    """A hand-written loop over the same loaders: (whole epochs, training only) images/s."""
    import torch

    from recipes.core.data import build_transforms, make_loader
    from recipes.schedules import build_optimizer
    from recipes.training.setup import build_setup

    t, device = config.training, opts.device
    setup = build_setup(config)
    model = setup.model.to(device, memory_format=torch.channels_last)
    optimizer = build_optimizer(model, t.optimizer, t.learning_rate, t.weight_decay)
    train_tf, eval_tf = build_transforms(config.data, setup.data_config)
    workers = config.data.num_workers
    train_loader = make_loader(
        setup.data, "train", train_tf, t.per_device_train_batch_size, True, workers
    )
    val_loader = make_loader(
        setup.data, "validation", eval_tf, t.per_device_eval_batch_size, False, workers
    )
    autocast = torch.autocast(device, dtype=torch.bfloat16)
    epochs = []
    with training_forwards(type(model).__name__) as stamps:
        for _ in range(3):
            model.train()
            for images, labels in train_loader:
                images = images.to(device, non_blocking=True)
                with autocast:
                    logits = model(images.contiguous(memory_format=torch.channels_last))
                    loss = torch.nn.functional.cross_entropy(logits.float(), labels.to(device))
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), t.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            loss.item()
            model.eval()
            with torch.no_grad(), autocast:
                for images, _ in val_loader:
                    model(images.to(device).contiguous(memory_format=torch.channels_last)).cpu()
            epochs.append(time.perf_counter())
    whole = 2 * config.data.max_train_samples / (epochs[2] - epochs[0])
    return whole, training_rate(stamps, opts.steps, opts.batch)


def main() -> None:
    opts = parse_args()
    if opts.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from recipes.core.config import parse_config

    with tempfile.TemporaryDirectory() as tmp:
        config = parse_config(None, config_args(opts, tmp))
        plain = plain_rate(config, opts)
        engine = engine_rate(config, opts)
    print(
        f"{opts.model} at {opts.size} px, batch {opts.batch}, bf16 + channels_last on {opts.device}"
    )
    print("images/s        whole epochs   training only")
    print(f"plain loop      {plain[0]:12.1f}   {plain[1]:13.1f}")
    print(f"engine          {engine[0]:12.1f}   {engine[1]:13.1f}")
    print(f"engine / plain  {engine[0] / plain[0]:12.2f}   {engine[1] / plain[1]:13.2f}")
    print(
        "(whole epochs: training + validation; the engine's also save a checkpoint and best model)"
    )


if __name__ == "__main__":
    main()

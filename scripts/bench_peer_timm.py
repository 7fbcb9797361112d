"""`recipes train` against timm's own train.py: same model, data, augmentation, optimizer, epochs.

Fashion-MNIST is written once as an image folder (train / validation / test, PNG files) and both
tools train on it from a cold start (fresh dataset and decode caches for ours), in alternating
rounds. Printed: the wall time of each whole command, its final validation top-1, and the median
time ratio recipes / timm (goal: at most 1.0 at the same accuracy within noise).

    git clone https://github.com/huggingface/pytorch-image-models /tmp/timm
    python scripts/bench_peer_timm.py --timm-train /tmp/timm/train.py --epochs 3
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import cpu_name
from PIL import Image

from recipes.core.fashion import load_fashion_mnist

SPLITS = ("train", "validation", "test")


def export_folder(root: Path, train: int) -> Path:
    """Fashion-MNIST as root/SPLIT/CLASS/N.png (the first `train` training images), once."""
    folder = root / f"fashion-folder-{train}"
    if (folder / "done").exists():
        return folder
    splits = load_fashion_mnist(None)
    names = splits["train"].features["label"].names
    for split in SPLITS:
        part = splits[split].with_format("numpy")
        count = min(train, len(part)) if split == "train" else len(part)
        images, labels = part[:count]["image"], part[:count]["label"]
        for index, (pixels, label) in enumerate(zip(images, labels, strict=True)):
            target = folder / split / names[label].replace("/", "_")
            target.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels.astype("uint8"), mode="L").save(target / f"{index}.png")
    (folder / "done").touch()
    return folder


def common(args) -> dict:
    """The settings both tools get, by meaning."""
    return {
        "model": args.model, "size": 32, "batch": 128, "epochs": args.epochs, "lr": 3e-3,
        "wd": 0.05, "smoothing": 0.1, "scale": 0.7, "hflip": 0.5, "clip": 1.0, "seed": 0,
    }  # fmt: skip


def timm_command(args, folder: Path, out: Path) -> list[str]:
    """timm's train.py on CPU: per-update cosine, one warmup epoch, no colour jitter, and the
    grayscale statistics ours uses (the mean of the RGB ones)."""
    c = common(args)
    command = [
        sys.executable, args.timm_train, "--data-dir", str(folder), "--train-split", "train",
        "--val-split", "validation", "--model", c["model"], "--num-classes", "10",
        "--img-size", str(c["size"]), "--in-chans", "1", "--input-img-mode", "L",
        "--crop-pct", "1.0", "--mean", "0.449", "--std", "0.226", "--device", "cpu",
        "--no-prefetcher", "--workers", str(args.workers),
        "-b", str(c["batch"]), "--epochs", str(c["epochs"]), "--opt", "adamw", "--lr", str(c["lr"]),
        "--weight-decay", str(c["wd"]), "--smoothing", str(c["smoothing"]), "--sched", "cosine",
        "--sched-on-updates", "--warmup-epochs", "1", "--warmup-lr", "0", "--min-lr", "0",
        "--scale", str(c["scale"]), "1.0", "--hflip", str(c["hflip"]), "--color-jitter", "0",
        "--train-interpolation", "bilinear", "--interpolation", "bilinear",
        "--clip-grad", str(c["clip"]), "--seed", str(c["seed"]), "--output", str(out),
        "--experiment", "run", "--checkpoint-hist", "1", "--log-interval", "1000",
    ]  # fmt: skip
    if args.bf16:
        command += ["--amp", "--amp-dtype", "bfloat16", "--channels-last"]
    return command


def recipes_command(args, folder: Path, out: Path) -> list[str]:
    """The same run through `recipes train` on the image folder."""
    c = common(args)
    command = [
        sys.executable, "-m", "recipes", "train", "--dataset", "imagefolder",
        "--data_dir", str(folder), "--model_name", c["model"], "--image_size", str(c["size"]),
        "--per_device_train_batch_size", str(c["batch"]), "--num_epochs", str(c["epochs"]),
        "--optimizer", "adamw", "--learning_rate", str(c["lr"]), "--weight_decay", str(c["wd"]),
        "--label_smoothing", str(c["smoothing"]), "--lr_scheduler", "cosine",
        "--warmup_epochs", "1", "--crop_scale", str(c["scale"]), "--hflip", str(c["hflip"]),
        "--max_grad_norm", str(c["clip"]), "--seed", str(c["seed"]), "--output_dir", str(out),
        "--report_to", "none", "--logging_steps", "1000",
    ]  # fmt: skip
    if args.bf16:
        command += ["--mixed_precision", "bf16", "--channels_last", "true"]
    return command


def timed(command: list[str], env: dict) -> float:
    """Wall seconds of one whole command, from process start to exit."""
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{command[1]} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - start


def timm_accuracy(out: Path) -> float:
    rows = list(csv.DictReader((out / "run" / "summary.csv").read_text().splitlines()))
    return float(rows[-1]["eval_top1"]) / 100


def recipes_accuracy(out: Path) -> float:
    results = next(out.rglob("results.json"))
    return json.loads(results.read_text())["val_accuracy"]


def one_round(args, folder: Path, tmp: Path, round_: int) -> dict:
    """Both tools once, each from cold caches."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    env |= {"RECIPES_CACHE": str(tmp / f"cache-{round_}")}
    env |= {"HF_DATASETS_CACHE": str(tmp / f"hf-{round_}")}
    timm_out, ours_out = tmp / f"timm-{round_}", tmp / f"recipes-{round_}"
    timm_env = {**env, "PYTHONPATH": str(Path(args.timm_train).parent)}
    timm_seconds = timed(timm_command(args, folder, timm_out), timm_env)
    ours_seconds = timed(recipes_command(args, folder, ours_out), env)
    row = {
        "timm s": timm_seconds, "recipes s": ours_seconds, "ratio": ours_seconds / timm_seconds,
        "timm acc": timm_accuracy(timm_out), "recipes acc": recipes_accuracy(ours_out),
    }  # fmt: skip
    print(f"round {round_}: " + ", ".join(f"{k} {v:.3f}" for k, v in row.items()), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timm-train", required=True, help="train.py of a timm checkout")
    parser.add_argument("--model", default="resnet10t")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--train", type=int, default=60000, help="training images")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="timm's loader workers")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast + channels_last")
    parser.add_argument("--work", default=None, help="where the image folder is kept")
    args = parser.parse_args()
    print(f"CPU: {cpu_name()}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = export_folder(Path(args.work or tmp), args.train)
        rows = [one_round(args, folder, Path(tmp), r) for r in range(args.rounds)]
    med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    print(
        f"medians over {len(rows)} rounds: timm {med['timm s']:.1f}s (val {med['timm acc']:.4f}), "
        f"recipes {med['recipes s']:.1f}s (val {med['recipes acc']:.4f}); "
        f"time ratio recipes / timm {med['ratio']:.2f} (goal <= 1.0)"
    )


if __name__ == "__main__":
    main()

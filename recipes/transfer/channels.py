"""A saved model for inputs of another channel count: a grayscale (1-channel) backbone made to
take RGB images, as timm adapts hub weights, so that it transfers to 3-channel data."""

from __future__ import annotations

import json
from pathlib import Path

import timm

from recipes.core.models import save_model, weights_file


def match_channels(checkpoint: str | Path, in_chans: int, out: Path) -> Path:
    """The checkpoint folder itself when it takes `in_chans` channels; otherwise a copy in `out`
    whose first convolution timm adapted (a 1-channel stem repeated over 3 channels, divided by
    3: an RGB image with equal channels gives the grayscale model's activations)."""
    checkpoint = Path(checkpoint)
    config = json.loads((checkpoint / "config.json").read_text())
    cfg = config["pretrained_cfg"]
    channels = int(cfg["input_size"][0])
    if channels == in_chans:
        return checkpoint
    overlay = dict(
        file=str(weights_file(checkpoint)),
        num_classes=cfg["num_classes"],
        input_size=tuple(cfg["input_size"]),  # what the weights were made for: timm converts
    )
    model = timm.create_model(
        config["architecture"],
        pretrained=True,
        num_classes=cfg["num_classes"],
        in_chans=in_chans,
        pretrained_cfg_overlay=overlay,
        **{k: v for k, v in config.get("model_args", {}).items() if k != "in_chans"},
    )
    spread = lambda values: tuple(sum(values) / len(values) for _ in range(in_chans))  # noqa: E731
    data_config = {
        **{k: cfg[k] for k in ("interpolation", "crop_pct", "crop_mode") if k in cfg},
        "input_size": (in_chans, *cfg["input_size"][1:]),
        "mean": spread(cfg["mean"]),
        "std": spread(cfg["std"]),
    }
    return save_model(model.eval(), out, config["label_names"], data_config)

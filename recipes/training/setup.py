"""What every run is built from: the data, the model and its preprocessing."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from timm.data import resolve_data_config

from recipes.core.config import RecipeConfig
from recipes.core.data import ImageData, load_image_data
from recipes.core.models import create_model


@dataclass
class Setup:
    """What a run is built from: data, the model and its preprocessing."""

    data: ImageData
    model: torch.nn.Module
    data_config: dict


def build_setup(config: RecipeConfig) -> Setup:
    """Load the data and create the model the recipe describes."""
    data = load_image_data(config.data)
    size, channels = config.data.image_size, data.channels
    model = create_model(config.model, data.num_classes, data.label_names, channels, size)
    data_config = resolve_data_config({"input_size": (channels, size, size)}, model=model)
    data_config.update(crop_pct=1.0, interpolation="bilinear")
    if channels == 1:  # a grayscale model is normalised by the mean of the RGB statistics
        data_config.update(mean=(sum(data_config["mean"]) / 3,), std=(sum(data_config["std"]) / 3,))
    return Setup(data, model, data_config)

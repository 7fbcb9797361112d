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
    model = create_model(config.model, data.num_classes, data.label_names)
    size = config.data.image_size
    data_config = resolve_data_config({"input_size": (3, size, size)}, model=model)
    data_config.update(crop_pct=1.0, interpolation="bilinear")
    return Setup(data, model, data_config)

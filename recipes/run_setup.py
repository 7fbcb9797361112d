"""What every run is built from: the data, the model, its preprocessing and the Accelerator."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState
from accelerate.utils import DataLoaderConfiguration
from timm.data import resolve_data_config

from recipes.config import RecipeConfig
from recipes.data import ImageData, load_image_data
from recipes.errors import RecipeError
from recipes.models import create_model
from recipes.parallel import check_gpu_request, device_kwargs


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


def make_accelerator(config: RecipeConfig, log_with: list[str], run_dir: Path) -> Accelerator:
    """Accelerate on GPU when there is one, CPU (gloo) otherwise; refuse a silent single process."""
    t = config.training
    AcceleratorState._reset_state()  # each run sets its own precision, also in one process
    GradientState._reset_state()
    check_gpu_request()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    try:
        accelerator = Accelerator(
            **device_kwargs(),
            mixed_precision=t.mixed_precision,
            gradient_accumulation_steps=t.gradient_accumulation_steps,
            step_scheduler_with_optimizer=False,
            dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
            log_with=log_with or None,
            project_dir=str(run_dir / "tracking"),
        )
    except ValueError as err:
        raise RecipeError(
            f"WORLD_SIZE is {world} but the process group cannot start ({err}); launch with "
            "`accelerate launch --config_file accelerate_configs/cpu_2proc.yaml -m recipes train`"
        ) from None
    if world > 1 and accelerator.num_processes == 1:
        raise RecipeError(
            f"WORLD_SIZE is {world} but Accelerate sees one process, so the processes would train "
            "apart; launch with `accelerate launch --config_file accelerate_configs/cpu_2proc.yaml`"
        )
    return accelerator

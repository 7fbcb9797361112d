"""The Accelerator of a run: GPU when there is one, gloo on CPU, and the traps refused."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState
from accelerate.utils import DataLoaderConfiguration, InitProcessGroupKwargs
from torch import nn

from recipes.core.config import RecipeConfig
from recipes.core.errors import RecipeError


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def env_flag(name: str) -> bool:
    return os.environ.get(name, "false").lower() in ("1", "true", "yes")


def check_gpu_request() -> None:
    """FSDP launched without GPUs would silently become plain DDP: say so in one line."""
    if env_flag("ACCELERATE_USE_FSDP") and world_size() > 1 and not torch.cuda.is_available():
        raise RecipeError(
            "FSDP runs only on GPUs and this machine has none; on CPU use "
            "accelerate_configs/deepspeed_zero3.yaml (sharded) or cpu_2proc.yaml"
        )


def device_kwargs() -> dict:
    """Accelerator device arguments: CPU runs use gloo, and DeepSpeed must not be given cpu=True."""
    if torch.cuda.is_available():
        return {"cpu": False}
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true":
        return {"cpu": False, "kwargs_handlers": [InitProcessGroupKwargs(backend="gloo")]}
    return {"cpu": True}


def zero_stage(accelerator) -> int:
    """The DeepSpeed ZeRO stage of this run, 0 without DeepSpeed."""
    plugin = accelerator.state.deepspeed_plugin
    return plugin.zero_stage if plugin is not None else 0


@contextlib.contextmanager
def whole_weights(accelerator, model: nn.Module) -> Iterator[None]:
    """ZeRO-3 leaves each process a shard of every large weight; saving needs them whole.

    Every process must enter (the gather is collective); only the main one should write.
    """
    if zero_stage(accelerator) != 3:
        yield
        return
    import deepspeed

    with deepspeed.zero.GatheredParameters(list(model.parameters()), modifier_rank=None):
        yield


def make_accelerator(config: RecipeConfig, log_with: list[str], run_dir: Path) -> Accelerator:
    """Accelerate on GPU when there is one, CPU (gloo) otherwise; refuse a silent single process."""
    t = config.training
    AcceleratorState._reset_state()  # each run sets its own precision, also in one process
    GradientState._reset_state()
    check_gpu_request()
    world = world_size()
    try:
        accelerator = Accelerator(
            **device_kwargs(),
            mixed_precision=t.mixed_precision,
            gradient_accumulation_steps=t.gradient_accumulation_steps,
            step_scheduler_with_optimizer=False,
            dataloader_config=DataLoaderConfiguration(
                use_seedable_sampler=True, non_blocking=torch.cuda.is_available()
            ),
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

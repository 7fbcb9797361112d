"""The one function that trains a recipe, whatever its route; every caller goes through it."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from contextlib import nullcontext

from recipes.core import runs
from recipes.core.config import RecipeConfig, route_of
from recipes.core.locks import folder_lock
from recipes.training.step import EpochHook

# Every route takes (config, epoch_hook) and returns what it wrote to results.json.
ROUTES: dict[str, str] = {
    "pipeline": "parallel: pipeline (DeepSpeed stages x replicas)",
    "tensor": "parallel: tensor (layers split over tensor-parallel ranks x data replicas)",
    "cached_probe": "mode: linear_probe with cached_features (L-BFGS on cached features)",
    "probe_finetune": "mode: finetune with probe_epochs (a linear probe, then fine-tuning)",
    "engine": "everything else: the Accelerate loop",
}


def route_function(route: str) -> Callable[[RecipeConfig, EpochHook | None], dict]:
    """The function of a route, imported when it runs (DeepSpeed is slow to import)."""
    if route == "pipeline":
        from recipes.distributed.pipeline import train_pipeline

        return train_pipeline
    if route == "tensor":
        from recipes.distributed.tensor import train_tensor

        return train_tensor
    if route == "cached_probe":
        from recipes.transfer.probe import run_linear_probe

        return run_linear_probe
    if route == "probe_finetune":
        from recipes.transfer.lpft import probe_then_finetune

        return probe_then_finetune
    from recipes.training.engine import train

    return train


def resolve_strategy(config: RecipeConfig) -> tuple[RecipeConfig, dict | None]:
    """`strategy: auto` measures the data against the pretrained features and picks the mode."""
    if config.model.strategy != "auto":
        return config, None
    from recipes.transfer.advise import advise

    advice = advise(config)
    print(advice.report())
    return config.replace(**advice.settings), dataclasses.asdict(advice)


def run_recipe(config: RecipeConfig, epoch_hook: EpochHook | None = None) -> dict:
    """Train `config` by its route; `epoch_hook(epoch, metrics)` may stop it after any epoch.

    `recipes train`, sweep trials, ensemble members, `recipes tune` and the transfer study all
    call this, so one recipe trains the same way whoever runs it.
    """
    config, advice = resolve_strategy(config)
    main = int(os.environ.get("RANK", "0")) == 0  # one lock per run, held by rank 0
    with folder_lock(runs.run_dir(config)) if main else nullcontext():
        results = route_function(route_of(config))(config, epoch_hook)
        if advice is not None and main:
            runs.write_json(runs.run_dir(config) / "advice.json", advice)
    return results

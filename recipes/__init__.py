"""training-recipes: the lecture "Training Neural Networks, part 2" as runnable recipes.

The public API; each name is imported on first use, so `import recipes` stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "RecipeConfig": "recipes.core.config",
    "RecipeError": "recipes.core.errors",
    "parse_config": "recipes.core.config",
    "load_image_data": "recipes.core.data",
    "load_model": "recipes.core.models",
    "run_recipe": "recipes.training.route",
    "train": "recipes.training.engine",
    "build_scheduler": "recipes.schedules",
    "list_schedulers": "recipes.schedules",
    "build_optimizer": "recipes.schedules",
    "run_checks": "recipes.tuning",
    "check_recipe": "recipes.tuning",
    "diagnose": "recipes.tuning",
    "tune": "recipes.tuning",
    "TuneOptions": "recipes.tuning",
    "sweep": "recipes.search",
    "SweepOptions": "recipes.search",
    "load_ensemble": "recipes.ensembles",
    "soup": "recipes.ensembles",
    "advise": "recipes.transfer",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'recipes' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return __all__

"""Steps 1-3 on what a recipe would train: one place builds the checks' model, data and settings,
so `recipes check` and `recipes tune` judge the same set-up the same way."""

from __future__ import annotations

from pathlib import Path

import torch
from accelerate.utils import set_seed

from recipes.core import runs
from recipes.core.config import RecipeConfig
from recipes.core.data import build_transforms, make_loader
from recipes.training.setup import build_setup
from recipes.tuning.check_report import CheckReport
from recipes.tuning.checks import run_checks


def check_recipe(
    config: RecipeConfig, out_dir: str | Path | None = None, **settings
) -> CheckReport:
    """The checks on the recipe's model (its seed's initial weights) and unaugmented data.

    The recipe gives the optimizer, LR, weight decay, momentum, label smoothing and seed;
    `settings` are further `CheckSettings` fields (budgets of each check, LR trials).
    """
    t = config.training
    set_seed(t.seed)  # the same initial weights `recipes train` starts from
    setup = build_setup(config)
    transform = build_transforms(config.data, setup.data_config, augment=False)[0]
    loader = make_loader(setup.data, "train", transform, t.per_device_train_batch_size, True)
    model = setup.model.to("cuda" if torch.cuda.is_available() else "cpu")
    return run_checks(
        model,
        loader,
        setup.data.num_classes,
        out_dir=runs.run_dir(config) if out_dir is None else out_dir,
        optimizer=t.optimizer,
        lr=t.learning_rate,
        weight_decay=t.weight_decay,
        momentum=t.momentum,
        label_smoothing=t.label_smoothing,
        seed=t.seed,
        **settings,
    )

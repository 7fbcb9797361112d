"""LR schedules, the step plan and optimizers: the lecture's first section."""

from recipes.schedules.optimizers import build_optimizer, check_optimizer_name, set_peak_lr
from recipes.schedules.plan import (
    StepPlan,
    affordable_updates,
    plan_steps,
    scale_learning_rate,
    updates_per_epoch,
)
from recipes.schedules.registry import (
    FAMILIES,
    LECTURE_FAMILIES,
    Family,
    build_scheduler,
    epochs_to_steps,
    list_schedulers,
    lr_curve,
    unknown_name,
)
from recipes.schedules.warp import Warp, advance

__all__ = [
    "FAMILIES",
    "LECTURE_FAMILIES",
    "Family",
    "StepPlan",
    "Warp",
    "advance",
    "affordable_updates",
    "build_optimizer",
    "build_scheduler",
    "check_optimizer_name",
    "epochs_to_steps",
    "list_schedulers",
    "lr_curve",
    "plan_steps",
    "scale_learning_rate",
    "set_peak_lr",
    "unknown_name",
    "updates_per_epoch",
]

"""The step plan, computed in one place for every route: updates, warmup and the scaled LR."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from recipes.core.errors import RecipeError
from recipes.schedules.registry import epochs_to_steps

if TYPE_CHECKING:
    from recipes.core.arguments import TrainingArguments


def scale_learning_rate(base_lr: float, global_batch: int, base_batch: int, rule: str) -> float:
    """Goyal et al.'s linear rule (or sqrt): the LR grows with the global batch."""
    if rule == "none":
        return base_lr
    ratio = global_batch / base_batch
    return base_lr * (ratio if rule == "linear" else math.sqrt(ratio))


@dataclass(frozen=True)
class StepPlan:
    """How many optimizer updates a run makes, its warmup, global batch, peak LR and kwargs."""

    per_epoch: int
    total: int
    warmup: int
    global_batch: int
    lr: float
    scheduler_kwargs: dict

    @property
    def epochs(self) -> int:
        """Passes over the data the loop starts: the last one stops part-way under max_steps."""
        return math.ceil(self.total / self.per_epoch)


def updates_per_epoch(examples: int, t: TrainingArguments, replicas: int = 1) -> int:
    """Updates in one pass over `examples`: each replica's batches, one update per accumulation."""
    batches = math.ceil(examples / (t.per_device_train_batch_size * replicas))
    return math.ceil(batches / t.gradient_accumulation_steps)


def affordable_updates(
    seconds: float, epoch_seconds: float, eval_seconds: float, per_epoch: int
) -> int:
    """Updates of `per_epoch` an epoch that fit in `seconds`: whole epochs, each with its
    evaluation, then the part of one more that the rest pays for beside its evaluation."""
    cycle = epoch_seconds + eval_seconds
    whole = max(0, math.floor(seconds / max(cycle, 1e-9)))
    part = (seconds - whole * cycle - eval_seconds) / max(epoch_seconds, 1e-9)
    return whole * per_epoch + math.floor(min(max(part, 0.0), 1.0) * per_epoch)


def plan_steps(t: TrainingArguments, batches_per_epoch: int, replicas: int) -> StepPlan:
    """One update per `gradient_accumulation_steps` batches of each replica, the last one partial.

    `batches_per_epoch` is what one replica's loader yields in an epoch; `replicas` is the number
    of data-parallel copies of the model (processes for the engine, replicas for the pipeline).
    """
    if t.gradient_accumulation_steps > batches_per_epoch:
        raise RecipeError(
            f"gradient_accumulation_steps: {t.gradient_accumulation_steps} is more than the "
            f"{batches_per_epoch} batches of an epoch on each process; set it to at most "
            f"{batches_per_epoch}, or lower per_device_train_batch_size"
        )
    per_epoch = math.ceil(batches_per_epoch / t.gradient_accumulation_steps)
    global_batch = t.per_device_train_batch_size * replicas * t.gradient_accumulation_steps
    plan = StepPlan(
        per_epoch=per_epoch,
        total=t.max_steps or int(t.num_epochs * per_epoch),
        warmup=t.warmup_steps or round(t.warmup_epochs * per_epoch),
        global_batch=global_batch,
        lr=scale_learning_rate(t.learning_rate, global_batch, t.base_batch_size, t.scale_lr),
        scheduler_kwargs=epochs_to_steps(t.lr_scheduler, t.scheduler_kwargs, per_epoch),
    )
    if plan.warmup >= plan.total:
        raise RecipeError(
            f"warmup ({plan.warmup} updates) is not shorter than training ({plan.total} updates); "
            "lower warmup_epochs or warmup_steps, or raise num_epochs (or max_steps)"
        )
    return plan

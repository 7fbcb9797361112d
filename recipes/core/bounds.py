"""The valid range of every numeric training argument, checked before any work starts."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from recipes.core.errors import RecipeError


@dataclass(frozen=True)
class Bound:
    """low <= value (or <) and value <= high (or <); None: no limit on that side."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    example: str = ""

    def holds(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        above = self.low is None or (value > self.low if self.low_open else value >= self.low)
        below = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return above and below

    def text(self) -> str:
        left = "" if self.low is None else f"{'>' if self.low_open else '>='} {self.low:g}"
        right = "" if self.high is None else f"{'<' if self.high_open else '<='} {self.high:g}"
        return " and ".join(part for part in (left, right) if part)


POSITIVE, COUNT = Bound(0, low_open=True), Bound(1)
NON_NEGATIVE, PROBABILITY = Bound(0), Bound(0, 1)
FRACTION = Bound(0, 1, high_open=True)  # [0, 1)

BOUNDS: dict[str, tuple[Bound, str]] = {
    "image_size": (COUNT, "32"),
    "hflip": (PROBABILITY, "0.5"),
    "crop_scale": (Bound(0, 1, low_open=True), "0.6"),
    "num_workers": (NON_NEGATIVE, "0"),
    "max_train_samples": (NON_NEGATIVE, "0 (all)"),
    "train_per_class": (COUNT, "5"),
    "backbone_lr_scale": (NON_NEGATIVE, "0.1"),
    "drop_rate": (FRACTION, "0.1"),
    "freeze_stages": (NON_NEGATIVE, "0"),
    "probe_epochs": (NON_NEGATIVE, "0"),
    "seed": (NON_NEGATIVE, "42"),
    "num_epochs": (COUNT, "10"),
    "max_steps": (NON_NEGATIVE, "0 (num_epochs' worth)"),
    "max_seconds": (NON_NEGATIVE, "1800 (0: off)"),
    "per_device_train_batch_size": (COUNT, "64"),
    "per_device_eval_batch_size": (COUNT, "256"),
    "gradient_accumulation_steps": (COUNT, "1"),
    "learning_rate": (POSITIVE, "3e-3"),
    "weight_decay": (NON_NEGATIVE, "0.05"),
    "momentum": (FRACTION, "0.9"),
    "label_smoothing": (FRACTION, "0.1"),
    "max_grad_norm": (NON_NEGATIVE, "1.0 (0: off)"),
    "warmup_epochs": (NON_NEGATIVE, "1"),
    "warmup_steps": (NON_NEGATIVE, "0"),
    "base_batch_size": (COUNT, "256"),
    "logging_steps": (COUNT, "10"),
    "save_steps": (NON_NEGATIVE, "0 (off)"),
    "save_total_limit": (COUNT, "2"),
    "ema_decay": (FRACTION, "0.999 (0: off)"),
    "pipeline_stages": (COUNT, "2"),
    "micro_batches": (COUNT, "4"),
    "tensor_parallel_size": (COUNT, "2"),
}


def check_bounds(arguments) -> None:
    """Refuse the first numeric field of a dataclass outside its range, naming range and fix."""
    for f in dataclasses.fields(arguments):
        value = getattr(arguments, f.name)
        if f.name not in BOUNDS or value is None or isinstance(value, bool):
            continue
        bound, example = BOUNDS[f.name]
        if not isinstance(value, int | float) or not bound.holds(value):
            raise RecipeError(
                f"{f.name}: {value!r} is out of range; it must be {bound.text()} (e.g. {example})"
            )

"""Every LR family in one registry: name -> builder, one-line help, epoch-valued kwargs."""

from __future__ import annotations

import bisect
import difflib
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import torch
from torch.optim.lr_scheduler import LambdaLR, LRScheduler
from transformers import SchedulerType, get_scheduler
from transformers.optimization import TYPE_TO_SCHEDULER_FUNCTION

from recipes.core.errors import RecipeError

# (optimizer, total updates, warmup updates, scheduler_kwargs) -> a torch LR scheduler
Builder = Callable[[torch.optim.Optimizer, int, int, dict], LRScheduler]


@dataclass(frozen=True)
class Family:
    """One LR schedule family: how to build it, what it does, which kwargs count epochs."""

    build: Builder
    help: str
    epoch_kwargs: tuple[str, ...] = ()  # given in epochs by recipes, converted to updates
    example: dict = field(default_factory=dict)  # kwargs for a plot, in epochs of a 1-epoch run
    kwargs: tuple[str, ...] | None = None  # the parameters it takes (None: not checked)


def step_decay_factor(
    step: int, *, num_warmup_steps: int, milestones: tuple[int, ...], gamma: float
) -> float:
    """Linear warmup, then gamma ** (milestones passed): torch's MultiStepLR as a pure function."""
    if step < num_warmup_steps:
        return step / max(1, num_warmup_steps)
    return gamma ** bisect.bisect_right(milestones, step)


def _step_decay(milestones: tuple[int, ...], optimizer, warmup: int, kwargs: dict) -> LambdaLR:
    factor = partial(
        step_decay_factor,
        num_warmup_steps=warmup,
        milestones=milestones,
        gamma=float(kwargs.get("gamma", 0.1)),
    )
    return LambdaLR(optimizer, factor)


def step(optimizer, total: int, warmup: int, kwargs: dict) -> LRScheduler:
    """Every `step_size` updates (default a third of training), the LR is multiplied by gamma."""
    size = int(kwargs.get("step_size", max(1, total // 3)))
    if size < 1:
        raise RecipeError("step_size must be at least one step")
    return _step_decay(tuple(range(size, total + 1, size)), optimizer, warmup, kwargs)


def multistep(optimizer, total: int, warmup: int, kwargs: dict) -> LRScheduler:
    """At each milestone the LR is multiplied by gamma."""
    if "milestones" not in kwargs:
        raise RecipeError(
            'multistep needs scheduler_kwargs milestones, e.g. {"milestones": [30, 60]}'
        )
    milestones = tuple(sorted(int(m) for m in kwargs["milestones"]))
    return _step_decay(milestones, optimizer, warmup, kwargs)


def hf_family(name: str, optimizer, total: int, warmup: int, kwargs: dict) -> LRScheduler:
    """A `transformers.get_scheduler` family, each a pure function of the step."""
    if name == "constant" and warmup:
        name = "constant_with_warmup"
    try:
        return get_scheduler(
            name,
            optimizer,
            num_warmup_steps=warmup,
            num_training_steps=total,
            scheduler_specific_kwargs=kwargs,
        )
    except (TypeError, ValueError) as err:
        raise RecipeError(f"{name}: bad scheduler_kwargs {kwargs} ({err})") from None


HF_FIXED = ("optimizer", "num_warmup_steps", "num_training_steps", "last_epoch")


def hf_kwargs(name: str) -> tuple[str, ...]:
    """What a transformers schedule takes besides optimizer, steps and warmup: its signature."""
    function = TYPE_TO_SCHEDULER_FUNCTION[SchedulerType(name)]
    return tuple(p for p in inspect.signature(function).parameters if p not in HF_FIXED)


def _hf(name: str, help: str, **example) -> Family:
    return Family(partial(hf_family, name), help, example=example, kwargs=hf_kwargs(name))


FAMILIES: dict[str, Family] = {
    "step": Family(
        step,
        "multiply the LR by gamma every step_size epochs",
        ("step_size",),
        {"step_size": 0.3},
        ("step_size", "gamma"),
    ),  # fmt: skip
    "multistep": Family(
        multistep,
        "multiply the LR by gamma at each milestone epoch",
        ("milestones",),
        {"milestones": [0.5, 0.75]},
        ("milestones", "gamma"),
    ),  # fmt: skip
    "cosine": _hf("cosine", "half a cosine from the peak LR down to 0"),
    "linear": _hf("linear", "straight line from the peak LR down to 0"),
    "inverse_sqrt": _hf("inverse_sqrt", "LR proportional to 1/sqrt(step) after warmup"),
    "constant": _hf("constant", "the same LR throughout (after warmup)"),
    "constant_with_warmup": _hf("constant_with_warmup", "linear warmup, then constant"),
    "cosine_with_min_lr": _hf(
        "cosine_with_min_lr", "cosine down to min_lr or min_lr_rate x peak", min_lr_rate=0.1
    ),
    "cosine_warmup_with_min_lr": _hf(
        "cosine_warmup_with_min_lr",
        "cosine with min LR, warmup included in the cosine",
        min_lr_rate=0.1,
    ),
    "cosine_with_restarts": _hf(
        "cosine_with_restarts",
        "cosine restarted num_cycles times (SGDR; snapshot ensembles)",
        num_cycles=3,
    ),  # fmt: skip
    "polynomial": _hf("polynomial", "polynomial decay to lr_end with power", power=2.0),
    "warmup_stable_decay": _hf(
        "warmup_stable_decay", "warmup, a constant stage, then a decay stage", num_decay_steps=200
    ),
}
LECTURE_FAMILIES = ("step", "cosine", "linear", "inverse_sqrt", "constant")


def list_schedulers() -> list[str]:
    return sorted(FAMILIES)


def unknown_name(kind: str, name: str, valid: list[str]) -> RecipeError:
    """One line: the bad value, the closest names, where to see them all."""
    close = difflib.get_close_matches(name, valid, n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    return RecipeError(f"unknown {kind} {name!r}; {hint}valid: {', '.join(sorted(valid))}")


def family(name: str) -> Family:
    if name not in FAMILIES:
        raise unknown_name("scheduler", name, list_schedulers())
    return FAMILIES[name]


def build_scheduler(
    name: str,
    optimizer: torch.optim.Optimizer,
    num_training_steps: int,
    num_warmup_steps: int = 0,
    **kwargs,
) -> LRScheduler:
    """Any family by name, with warmup, as a torch scheduler stepped once per optimizer update."""
    return family(name).build(optimizer, num_training_steps, num_warmup_steps, kwargs)


def check_scheduler_kwargs(name: str, kwargs: dict, num_epochs: float) -> None:
    """Unknown keys are refused (not silently ignored); epoch-valued ones must fall in training."""
    valid = family(name).kwargs
    for key in kwargs if valid is not None else ():
        if key not in valid:
            takes = f"valid: {', '.join(valid)}" if valid else "it takes none"
            raise RecipeError(f"scheduler_kwargs: {name} has no parameter {key!r}; {takes}")
    for key in family(name).epoch_kwargs:
        values = kwargs.get(key, [])
        for value in values if isinstance(values, list | tuple) else [values]:
            if not 0 < float(value) <= num_epochs:
                raise RecipeError(
                    f"scheduler_kwargs: {key} {value} is outside training (epochs 0 to "
                    f"{num_epochs:g}); give epochs inside it"
                )


def epochs_to_steps(name: str, kwargs: dict, steps_per_epoch: int) -> dict:
    """Recipes give a family's epoch-valued kwargs in epochs; schedules count optimizer updates."""
    out = dict(kwargs)
    for key in family(name).epoch_kwargs:
        if key not in out:
            continue
        value = out[key]
        if isinstance(value, list | tuple):
            out[key] = [round(float(v) * steps_per_epoch) for v in value]
        else:
            out[key] = max(1, round(float(value) * steps_per_epoch))
    return out


def lr_curve(name: str, total_steps: int, warmup_steps: int, **kwargs) -> list[float]:
    """The LR at every step of a schedule with peak 1, for plots and tests."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = build_scheduler(name, optimizer, total_steps, warmup_steps, **kwargs)
    values = []
    for _ in range(total_steps):
        values.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    return values

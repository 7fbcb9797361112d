"""Learning-rate schedules, warmup, batch-size scaling and the optimizer factory."""

from __future__ import annotations

import bisect
import difflib
import math
from functools import partial
from pathlib import Path

import torch
from timm.optim import create_optimizer_v2, list_optimizers, param_groups_weight_decay
from torch.optim.lr_scheduler import LambdaLR, LRScheduler
from transformers import get_scheduler

from recipes.errors import RecipeError

SCHEDULERS: dict[str, str] = {
    "step": "multiply the LR by gamma every step_size epochs",
    "multistep": "multiply the LR by gamma at each milestone epoch",
    "cosine": "half a cosine from the peak LR down to 0",
    "linear": "straight line from the peak LR down to 0",
    "inverse_sqrt": "LR proportional to 1/sqrt(step) after warmup",
    "constant": "the same LR throughout (after warmup)",
    "constant_with_warmup": "linear warmup, then constant",
    "cosine_with_min_lr": "cosine down to min_lr or min_lr_rate x peak",
    "cosine_warmup_with_min_lr": "cosine with min LR, warmup included in the cosine",
    "cosine_with_restarts": "cosine restarted num_cycles times (SGDR; snapshot ensembles)",
    "polynomial": "polynomial decay to lr_end with power",
    "warmup_stable_decay": "warmup, a constant stage, then a decay stage",
}
LECTURE_FAMILIES = ("step", "cosine", "linear", "inverse_sqrt", "constant")
EPOCH_KWARGS = ("step_size", "milestones")


def list_schedulers() -> list[str]:
    return sorted(SCHEDULERS)


def unknown_name(kind: str, name: str, valid: list[str]) -> RecipeError:
    """One line: the bad value, the closest names, where to see them all."""
    close = difflib.get_close_matches(name, valid, n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    return RecipeError(f"unknown {kind} {name!r}; {hint}valid: {', '.join(sorted(valid))}")


def step_decay_factor(
    step: int, *, num_warmup_steps: int, milestones: tuple[int, ...], gamma: float
) -> float:
    """Linear warmup, then gamma ** (milestones passed): torch's MultiStepLR as a pure function."""
    if step < num_warmup_steps:
        return step / max(1, num_warmup_steps)
    return gamma ** bisect.bisect_right(milestones, step)


def step_milestones(name: str, num_training_steps: int, kwargs: dict) -> tuple[int, ...]:
    if name == "multistep":
        if "milestones" not in kwargs:
            raise RecipeError(
                'multistep needs scheduler_kwargs milestones, e.g. {"milestones": [30, 60]}'
            )
        return tuple(sorted(int(m) for m in kwargs["milestones"]))
    size = int(kwargs.get("step_size", max(1, num_training_steps // 3)))
    if size < 1:
        raise RecipeError("step_size must be at least one step")
    return tuple(range(size, num_training_steps + 1, size))


def build_scheduler(
    name: str,
    optimizer: torch.optim.Optimizer,
    num_training_steps: int,
    num_warmup_steps: int = 0,
    **kwargs,
) -> LRScheduler:
    """Any family by name, with warmup, as a torch scheduler stepped once per optimizer update."""
    if name not in SCHEDULERS:
        raise unknown_name("scheduler", name, list_schedulers())
    if name in ("step", "multistep"):
        milestones = step_milestones(name, num_training_steps, kwargs)
        factor = partial(
            step_decay_factor,
            num_warmup_steps=num_warmup_steps,
            milestones=milestones,
            gamma=float(kwargs.get("gamma", 0.1)),
        )
        return LambdaLR(optimizer, factor)
    if name == "constant" and num_warmup_steps:
        name = "constant_with_warmup"
    try:
        return get_scheduler(
            name,
            optimizer,
            num_warmup_steps=num_warmup_steps,
            num_training_steps=num_training_steps,
            scheduler_specific_kwargs=kwargs,
        )
    except (TypeError, ValueError) as err:
        raise RecipeError(f"{name}: bad scheduler_kwargs {kwargs} ({err})") from None


def epochs_to_steps(kwargs: dict, steps_per_epoch: int) -> dict:
    """Recipes give step-decay points in epochs; schedules count optimizer updates."""
    out = dict(kwargs)
    if "step_size" in out:
        out["step_size"] = max(1, round(float(out["step_size"]) * steps_per_epoch))
    if "milestones" in out:
        out["milestones"] = [round(float(m) * steps_per_epoch) for m in out["milestones"]]
    return out


def scale_learning_rate(base_lr: float, global_batch: int, base_batch: int, rule: str) -> float:
    """Goyal et al.'s linear rule (or sqrt): the LR grows with the global batch."""
    if rule == "none":
        return base_lr
    ratio = global_batch / base_batch
    return base_lr * (ratio if rule == "linear" else math.sqrt(ratio))


def build_optimizer(
    model: torch.nn.Module,
    name: str,
    lr: float,
    weight_decay: float,
    momentum: float = 0.9,
    backbone_lr_scale: float = 1.0,
) -> torch.optim.Optimizer:
    """timm's optimizer by name; no decay on norms, biases and `no_weight_decay()` names."""
    if name not in list_optimizers():
        raise unknown_name("optimizer", name, list_optimizers())
    skip = model.no_weight_decay() if hasattr(model, "no_weight_decay") else ()
    groups = param_groups_weight_decay(model, weight_decay, no_weight_decay_list=skip)
    if backbone_lr_scale != 1.0:
        groups = split_head_groups(model, groups, lr, backbone_lr_scale)
    return create_optimizer_v2(
        groups, opt=name, lr=lr, weight_decay=weight_decay, momentum=momentum
    )


def split_head_groups(model, groups: list[dict], lr: float, scale: float) -> list[dict]:
    """Discriminative LRs: the new head at `lr`, the pretrained backbone at `lr * scale`."""
    head = {id(p) for p in model.get_classifier().parameters()}
    out = []
    for group in groups:
        for is_head, group_lr in ((True, lr), (False, lr * scale)):
            params = [p for p in group["params"] if (id(p) in head) == is_head]
            if params:
                out.append({**group, "params": params, "lr": group_lr})
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


PLOT_KWARGS = {
    "step": {"step_size": 300},
    "multistep": {"milestones": [500, 750]},
    "cosine_with_restarts": {"num_cycles": 3},
    "cosine_with_min_lr": {"min_lr_rate": 0.1},
    "cosine_warmup_with_min_lr": {"min_lr_rate": 0.1},
    "polynomial": {"power": 2.0},
    "warmup_stable_decay": {"num_decay_steps": 200},
}


def plot_schedules(
    out_dir: str | Path, total_steps: int = 1000, warmup_steps: int = 50
) -> list[Path]:
    """One PNG per family, like the lecture's LR-decay figures, plus one with the five together."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    curves = {
        n: lr_curve(n, total_steps, warmup_steps, **PLOT_KWARGS.get(n, {})) for n in SCHEDULERS
    }
    paths = []
    for name, values in curves.items():
        fig, ax = plt.subplots(figsize=(4, 3))
        ax.plot(values)
        ax.set(
            title=f"{name} (warmup {warmup_steps})", xlabel="optimizer step", ylabel="LR / peak LR"
        )
        fig.tight_layout()
        paths.append(out / f"lr_{name}.png")
        fig.savefig(paths[-1], dpi=100)
        plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 4))
    for name in LECTURE_FAMILIES:
        ax.plot(curves[name], label=name)
    ax.set(title="Learning-rate decay families", xlabel="optimizer step", ylabel="LR / peak LR")
    ax.legend()
    fig.tight_layout()
    paths.append(out / "lr_families.png")
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)
    return paths

"""Step 3 of the procedure: find a learning rate, by the LR range test or by short trials."""

from __future__ import annotations

import copy
import math

import torch
from torch.utils.data import DataLoader

from recipes.tuning.check_report import (
    CheckResult,
    CheckSettings,
    LossFn,
    first,
    frozen,
    make_optimizer,
    regularisation_off,
    train_step,
)


def lr_range_test(model, loader: DataLoader, loss_fn: LossFn, s: CheckSettings) -> CheckResult:
    """One exponential sweep of LRs, smoothed loss, stopped when the loss diverges."""
    optimizer = make_optimizer(model, s, s.sweep_start, s.weight_decay)
    if optimizer is None:
        return frozen("lr_range")
    ratio = (s.sweep_end / s.sweep_start) ** (1 / max(s.sweep_steps - 1, 1))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: ratio**step)
    curve, average, beta = {"lr": [], "loss": [], "smoothed": []}, 0.0, 0.9
    regularisation_off(model)
    for step, batch in enumerate(first(s.sweep_steps, loader)):
        curve["lr"].append(scheduler.get_last_lr()[0])
        curve["loss"].append(train_step(model, optimizer, loss_fn, batch)[0])
        scheduler.step()
        average = beta * average + (1 - beta) * curve["loss"][-1]
        curve["smoothed"].append(average / (1 - beta ** (step + 1)))
        lowest = min(curve["smoothed"])
        if not math.isfinite(average) or 0 < 4 * lowest < curve["smoothed"][-1]:
            break
    v = {"steps": len(curve["lr"]), "lr": s.lr, **suggest_lrs(curve, s.drop)}
    finding, action = lr_range_finding(v, s.drop)
    suggested = v["suggested_lr"]
    fits = suggested is not None and (s.lr is None or suggested / 100 <= s.lr <= v["lr_at_min"])
    return CheckResult("lr_range", fits, v, finding, action, curve)


def suggest_lrs(curve: dict, drop: float) -> dict:
    """Steepest descent of the smoothed loss per log LR, and a decade below its minimum."""
    lrs = curve["lr"]
    smoothed = [x if math.isfinite(x) else math.inf for x in curve["smoothed"]]
    low = min(range(len(smoothed)), key=smoothed.__getitem__)
    v = {
        "loss_start": smoothed[0],
        "loss_min": smoothed[low],
        "lr_at_min": lrs[low],
        "lr_steepest": None,
        "suggested_lr": None,
    }
    if smoothed[low] > (1 - drop) * smoothed[0] or low < 2:
        return v
    logs = [math.log(x) for x in lrs]
    slope = {
        i: (smoothed[i + 1] - smoothed[i - 1]) / (logs[i + 1] - logs[i - 1]) for i in range(1, low)
    }
    return {**v, "lr_steepest": lrs[min(slope, key=slope.get)], "suggested_lr": lrs[low] / 10}


def lr_range_finding(v: dict, drop: float) -> tuple[str, str]:
    """Whether any LR works, and whether the planned LR lies inside the range that does."""
    if v["suggested_lr"] is None:
        return (
            f"no LR in the sweep lowered the smoothed loss by {drop:.0%} "
            f"({v['loss_start']:.3g} -> lowest {v['loss_min']:.3g})",
            "fix the set-up first (initial loss, overfit), then sweep again",
        )
    span = (
        f"loss falls fastest at lr {v['lr_steepest']:.2g} and turns up after {v['lr_at_min']:.2g}"
    )
    use = f"use learning_rate {v['suggested_lr']:.2g}"
    if v["lr"] is not None and v["lr"] > v["lr_at_min"]:
        return f"lr {v['lr']:.2g} is too high: {span}", use
    if v["lr"] is not None and v["lr"] < v["suggested_lr"] / 100:
        return f"lr {v['lr']:.2g} is too low: {span}", use
    return span, f"{use} (a decade below the turn), then a coarse search around it"


def lr_trials(model, loader: DataLoader, loss_fn: LossFn, s: CheckSettings) -> CheckResult:
    """The lecture's variant: a short run at each LR; the largest that drops the loss wins."""
    weights, curve, drops = copy.deepcopy(model.state_dict()), {"lr": [], "losses": []}, []
    for lr in s.trial_lrs:
        model.load_state_dict(weights)
        optimizer = make_optimizer(model, s, lr, s.weight_decay)
        if optimizer is None:
            return frozen("lr_trials")
        regularisation_off(model)
        losses = [train_step(model, optimizer, loss_fn, b)[0] for b in first(s.trial_steps, loader)]
        tail = losses[-max(1, len(losses) // 10) :]
        finite = all(math.isfinite(x) for x in losses)
        drops.append(1 - sum(tail) / len(tail) / losses[0] if finite else -math.inf)
        curve["lr"].append(lr)
        curve["losses"].append(losses)
    good = [lr for lr, d in zip(s.trial_lrs, drops, strict=True) if d >= s.drop]
    v = {"lrs": list(s.trial_lrs), "drops": drops, "suggested_lr": max(good, default=None)}
    if not good:
        return CheckResult(
            "lr_trials",
            False,
            v,
            f"no LR dropped the loss by {s.drop:.0%} in {s.trial_steps} steps",
            "fix the set-up first, or try other LRs",
            curve,
        )
    best = v["suggested_lr"]
    finding = (
        f"lr {best:.2g} is the largest that drops the loss by {s.drop:.0%} in {s.trial_steps} steps"
    )
    return CheckResult("lr_trials", True, v, finding, f"train with learning_rate {best:.2g}", curve)

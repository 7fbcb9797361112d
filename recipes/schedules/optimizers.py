"""Optimizers from timm's factory: weight-decay groups, discriminative LRs for fine-tuning."""

from __future__ import annotations

import torch
from timm.optim import create_optimizer_v2, list_optimizers, param_groups_weight_decay

from recipes.schedules.registry import unknown_name


def check_optimizer_name(name: str) -> None:
    if name not in list_optimizers():
        raise unknown_name("optimizer", name, list_optimizers())


def build_optimizer(
    model: torch.nn.Module,
    name: str,
    lr: float,
    weight_decay: float,
    momentum: float = 0.9,
    backbone_lr_scale: float = 1.0,
) -> torch.optim.Optimizer:
    """timm's optimizer by name; no decay on norms, biases and `no_weight_decay()` names."""
    check_optimizer_name(name)
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


def set_peak_lr(optimizer: torch.optim.Optimizer, base_lr: float, peak_lr: float) -> None:
    """Apply batch-size scaling to every parameter group, keeping their LR ratios."""
    for group in optimizer.param_groups:
        group["lr"] = group["lr"] * peak_lr / base_lr

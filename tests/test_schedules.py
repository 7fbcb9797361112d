"""Schedules against their formulas, warmup for every family, optimizers and batch scaling."""

from __future__ import annotations

import math
import pickle

import pytest
import timm
import torch

from recipes.core.errors import RecipeError
from recipes.schedules import (
    build_optimizer,
    build_scheduler,
    epochs_to_steps,
    list_schedulers,
    lr_curve,
    scale_learning_rate,
)
from recipes.schedules.plots import plot_schedules
from recipes.schedules.registry import FAMILIES, Family, step

TOTAL, WARMUP = 100, 10
KWARGS = {"step": {"step_size": 30}, "multistep": {"milestones": [50, 80]}}
EXTRA_KWARGS = {
    "warmup_stable_decay": {"num_decay_steps": 20},
    "cosine_with_min_lr": {"min_lr_rate": 0.1},
    "cosine_warmup_with_min_lr": {"min_lr_rate": 0.1},
}


def after_warmup(step: int) -> float:
    return (step - WARMUP) / (TOTAL - WARMUP)


FORMULAS = {
    "cosine": lambda s: 0.5 * (1 + math.cos(math.pi * after_warmup(s))),
    "linear": lambda s: 1 - after_warmup(s),
    "inverse_sqrt": lambda s: math.sqrt(WARMUP / s),
    "constant": lambda s: 1.0,
    "step": lambda s: 0.1 ** (s // 30),
    "multistep": lambda s: 0.1 ** ((s >= 50) + (s >= 80)),
}


@pytest.mark.parametrize("name", sorted(FORMULAS))
@pytest.mark.parametrize("step", [10, 25, 49, 50, 79, 80, 99])
def test_lecture_families_follow_their_formula(name: str, step: int) -> None:
    curve = lr_curve(name, TOTAL, WARMUP, **KWARGS.get(name, {}))
    assert curve[step] == pytest.approx(FORMULAS[name](step), rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("name", list_schedulers())
def test_every_family_warms_up_linearly(name: str) -> None:
    kwargs = {**KWARGS, **EXTRA_KWARGS}.get(name, {})
    curve = lr_curve(name, TOTAL, WARMUP, **kwargs)
    assert curve[0] <= 1 / WARMUP + 1e-9
    assert curve[6] - curve[5] == pytest.approx(1 / WARMUP)
    assert max(curve) == pytest.approx(1.0)
    assert all(0.0 <= v <= 1.0 + 1e-9 for v in curve)


def test_multistep_matches_torch_multisteplr() -> None:
    param = torch.nn.Parameter(torch.zeros(1))
    reference_opt = torch.optim.SGD([param], lr=1.0)
    reference = torch.optim.lr_scheduler.MultiStepLR(reference_opt, [30, 60, 90], gamma=0.5)
    expected = []
    for _ in range(TOTAL):
        expected.append(reference.get_last_lr()[0])
        reference_opt.step()
        reference.step()
    ours = lr_curve("multistep", TOTAL, 0, milestones=[30, 60, 90], gamma=0.5)
    assert ours == pytest.approx(expected)


def test_scheduler_pickles_and_resumes_by_step() -> None:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = build_scheduler("step", optimizer, TOTAL, WARMUP, step_size=30)
    for _ in range(40):
        optimizer.step()
        scheduler.step()
    state = pickle.loads(pickle.dumps(scheduler.state_dict()))
    fresh_opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    fresh = build_scheduler("step", fresh_opt, TOTAL, WARMUP, step_size=30)
    fresh.load_state_dict(state)
    assert fresh.get_last_lr() == scheduler.get_last_lr() == [pytest.approx(0.1)]


def test_unknown_scheduler_lists_valid_names() -> None:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    with pytest.raises(
        RecipeError, match=r"unknown scheduler 'cosin'; did you mean cosine.*valid:"
    ):
        build_scheduler("cosin", optimizer, TOTAL)


def test_multistep_without_milestones_is_refused() -> None:
    with pytest.raises(RecipeError, match="milestones"):
        lr_curve("multistep", TOTAL, 0)


def test_missing_scheduler_kwargs_are_one_line() -> None:
    with pytest.raises(RecipeError, match="cosine_with_min_lr: bad scheduler_kwargs"):
        lr_curve("cosine_with_min_lr", TOTAL, 0)


def test_epoch_kwargs_become_steps() -> None:
    assert epochs_to_steps("multistep", {"milestones": [3, 4.5], "gamma": 0.2}, 20) == {
        "milestones": [60, 90],
        "gamma": 0.2,
    }
    assert epochs_to_steps("step", {"step_size": 2}, 7) == {"step_size": 14}


@pytest.mark.parametrize(("rule", "expected"), [("none", 0.1), ("linear", 0.4), ("sqrt", 0.2)])
def test_batch_size_scaling(rule: str, expected: float) -> None:
    assert scale_learning_rate(0.1, 1024, 256, rule) == pytest.approx(expected)


def test_optimizer_skips_decay_on_norms_and_biases() -> None:
    model = timm.create_model("test_vit", num_classes=3)
    optimizer = build_optimizer(model, "adamw", 1e-3, 0.05)
    by_decay = {g["weight_decay"]: g["params"] for g in optimizer.param_groups}
    assert set(by_decay) == {0.0, 0.05}
    assert all(p.ndim > 1 for p in by_decay[0.05])
    no_decay = {id(p) for p in by_decay[0.0]}
    named = dict(model.named_parameters())
    assert id(named["pos_embed"]) in no_decay  # from model.no_weight_decay()
    assert all(id(p) in no_decay for n, p in named.items() if n.endswith(".bias"))


@pytest.mark.parametrize("name", ["sgd", "adamw", "lamb", "lars"])
def test_timm_optimizers_by_name(name: str) -> None:
    model = timm.create_model("test_resnet", num_classes=3)
    optimizer = build_optimizer(model, name, 0.1, 1e-4)
    assert optimizer.param_groups[0]["lr"] == 0.1


def test_backbone_gets_a_smaller_learning_rate() -> None:
    model = timm.create_model("test_resnet", num_classes=3)
    optimizer = build_optimizer(model, "sgd", 0.1, 1e-4, backbone_lr_scale=0.1)
    head = {id(p) for p in model.get_classifier().parameters()}
    for group in optimizer.param_groups:
        is_head = {id(p) in head for p in group["params"]}
        assert len(is_head) == 1
        assert group["lr"] == pytest.approx(0.1 if is_head.pop() else 0.01)


def test_unknown_optimizer_suggests_close_names() -> None:
    model = timm.create_model("test_resnet", num_classes=3)
    with pytest.raises(RecipeError, match="unknown optimizer 'adamww'; did you mean adamw"):
        build_optimizer(model, "adamww", 0.1, 0.0)


def test_schedule_figures_are_written(tmp_path) -> None:
    paths = plot_schedules(tmp_path, total_steps=200, warmup_steps=10)
    assert {p.name for p in paths} >= {f"lr_{n}.png" for n in ("step", "cosine", "linear")}
    assert all(p.stat().st_size > 1000 for p in paths)


def test_a_new_family_is_one_registry_entry(monkeypatch) -> None:
    """Registered once, a family is accepted by recipes, counts its kwargs in epochs and plots."""
    from recipes.core.config import parse_config

    every_k = Family(step, "step decay under another name", ("step_size",), {"step_size": 0.5})
    monkeypatch.setitem(FAMILIES, "every_k", every_k)
    config = parse_config(None, ["--lr_scheduler", "every_k", "--model_name", "test_convnext"])
    assert config.training.lr_scheduler == "every_k"
    assert epochs_to_steps("every_k", {"step_size": 2}, 5) == {"step_size": 10}
    assert lr_curve("every_k", 20, 0, step_size=10)[10] == pytest.approx(0.1)
    assert "every_k" in list_schedulers()

"""Refinement narrows: around the best trials, inside the coarse range; only an edge the best
value lies on moves, by at most a decade; hard limits always hold."""

from __future__ import annotations

import math

import optuna

from recipes.search.refine import LIMITS, refine_sweep, top_values
from recipes.search.spec import build_spec

COARSE = {
    "method": "random",
    "metric": {"name": "val_accuracy", "goal": "maximize"},
    "run_cap": 8,
    "parameters": {
        "learning_rate": {"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-1},
        "weight_decay": {"distribution": "log_uniform_values", "min": 1e-5, "max": 1e-1},
        "label_smoothing": {"min": 0.0, "max": 0.2},
    },
}


def refined(raw: dict, top: list[dict]) -> dict:
    return refine_sweep(build_spec(raw, "coarse"), top, 2)["parameters"]


def point(lr: float, wd: float, ls: float = 0.1) -> dict:
    return {"learning_rate": lr, "weight_decay": wd, "label_smoothing": ls}


def decades(cfg: dict) -> float:
    return math.log10(cfg["max"] / cfg["min"])


def test_top_trials_in_the_middle_narrow_inside_the_coarse_range():
    out = refined(COARSE, [point(3e-3, 1e-3), point(1e-3, 3e-3), point(2e-3, 2e-3)])
    for name in ("learning_rate", "weight_decay"):
        cfg, coarse = out[name], COARSE["parameters"][name]
        assert coarse["min"] <= cfg["min"] < cfg["max"] <= coarse["max"], (name, cfg)
        assert decades(cfg) < 0.6 * decades(coarse), (name, cfg)
    smoothing = out["label_smoothing"]
    assert 0.0 <= smoothing["min"] < smoothing["max"] <= 0.2


def test_a_best_value_on_an_edge_moves_that_edge_by_at_most_a_decade():
    out = refined(COARSE, [point(1.1e-4, 2e-3), point(3e-4, 1e-3)])
    assert out["learning_rate"]["min"] == 1e-5  # one decade below the coarse edge
    assert out["learning_rate"]["max"] < 1e-2  # the far edge came in
    assert out["weight_decay"]["min"] > 1e-5 and out["weight_decay"]["max"] < 1e-1


def test_hard_limits_hold_over_repeated_rounds_at_the_upper_edge():
    """The coarse range's upper edge, chosen again and again, stops at the stated limit."""
    raw, best = COARSE, point(0.09, 0.09, 0.19)
    for _ in range(4):
        out = refined(raw, [best, {k: v / 2 for k, v in best.items()}])
        raw, best = {**COARSE, "parameters": out}, {k: out[k]["max"] for k in best}
        for name in best:
            low, high = LIMITS[name]
            assert low <= out[name]["min"] and out[name]["max"] <= high, (name, out[name])
    assert best == {name: LIMITS[name][1] for name in best}


def test_refinement_uses_the_best_quarter_and_at_least_two():
    spec = build_spec(COARSE, "coarse")
    study = optuna.create_study(direction="maximize")
    for i in range(12):
        trial = study.ask()
        trial.set_user_attr("values", point(1e-3 * (i + 1), 1e-4))
        study.tell(trial, i / 12)
    top = top_values(spec, study, None)
    assert [t["learning_rate"] for t in top] == [1.2e-2, 1.1e-2, 1e-2]
    assert len(top_values(spec, study, 5)) == 5
    small = optuna.create_study(direction="maximize")
    for i in range(3):
        trial = small.ask()
        trial.set_user_attr("values", point(1e-3, 1e-4))
        small.tell(trial, i)
    assert len(top_values(spec, small, None)) == 2


def test_the_incumbent_leads_the_top_trials_once_and_its_edge_moves():
    """Refine centres on the values chosen before, even when a trial beat them by noise: they
    come first, once, and a chosen value on the coarse edge moves that edge."""
    spec = build_spec(COARSE, "coarse")
    study = optuna.create_study(direction="maximize")
    incumbent = point(1e-4, 1e-3)
    for i, values in enumerate([point(1e-2, 1e-3), incumbent, point(3e-3, 1e-3)]):
        trial = study.ask()
        trial.set_user_attr("values", values)
        study.tell(trial, [0.8, 0.79, 0.7][i])
    top = top_values(spec, study, None, incumbent)
    assert top == [incumbent, point(1e-2, 1e-3)]
    assert top_values(spec, study, None)[0] == point(1e-2, 1e-3)
    assert refined(COARSE, top)["learning_rate"]["min"] < 1e-4

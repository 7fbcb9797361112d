"""W&B's Hyperband stopping rule as an Optuna pruner, against the reference rule.

`reference_stop` restates wandb/sweeps' `hyperband_stop_runs` (src/sweeps/hyperband_stopping.py
at b1dfc5f) line for line on plain lists, so the pruner is checked against W&B's own arithmetic
(bands, the 1/eta threshold, strict and non-strict) on scripted metric histories.
"""

from __future__ import annotations

import random

import numpy as np
import optuna
import pytest

from recipes.core.errors import RecipeError
from recipes.search.hyperband import WandbHyperbandPruner, read_rule


def reference_stop(et: dict, goal: str, histories: list[list[float]], running: list[bool]):
    """W&B's decision for each run (True: stop), as wandb/sweeps computes it."""
    eta = et.get("eta", 3)
    if "max_iter" in et:
        band, bands = et["max_iter"], []
        for _ in range(et["s"]):
            band /= eta
            if band < 1:
                break
            bands.append(int(band))
        bands = sorted(bands)
    else:
        band, bands = et["min_iter"], []
        for _ in range(100):
            bands.append(int(band))
            band *= eta
    r = 1.0 / eta
    signed = [[-v for v in h] if goal == "maximize" else list(h) for h in histories]
    everyone = [h for h in signed if len(h) > 0]
    thresholds = []
    for band in bands:
        values = [h[band - 1] for h in everyone if len(h) >= band]
        thresholds.append(np.inf if not values else sorted(values)[int(r * len(values))])
    decisions = []
    for history, alive in zip(signed, running, strict=True):
        stop = False
        if alive:
            closest, threshold = -1, 0.0
            for band, value in zip(bands, thresholds, strict=True):
                if band <= len(history):
                    closest, threshold = band, value
                else:
                    break
            if closest != -1:
                condition = min(history)
                if et.get("strict", True) is True:
                    condition = history[closest - 1]
                stop = condition > threshold
        decisions.append(stop)
    return decisions


def pruner_stop(et: dict, goal: str, histories: list[list[float]], running: list[bool]):
    """The pruner's decision for each running trial, through a real Optuna study."""
    study = optuna.create_study(direction=goal, pruner=WandbHyperbandPruner(read_rule(et)))
    live = []
    for values, alive in zip(histories, running, strict=True):
        trial = study.ask()
        for step, value in enumerate(values, 1):
            trial.report(value, step)
        if alive:
            live.append(trial)
        else:
            study.tell(trial, values[-1] if values else 0.0)
    return [study.pruner.prune(study, study._storage.get_trial(t._trial_id)) for t in live]


def case(seed: int) -> tuple[dict, str, list[list[float]], list[bool]]:
    """A random sweep state: the rule's settings, goal, histories and which runs still run."""
    rng = random.Random(seed)
    eta = rng.choice([2, 3, 4, 2.5])
    et = {"type": "hyperband", "eta": eta, "strict": rng.choice([True, False])}
    if rng.random() < 0.5:
        et["min_iter"] = rng.choice([1, 2, 3])
    else:
        et |= {"max_iter": rng.choice([9, 16, 27, 30]), "s": rng.choice([1, 2, 3])}
    goal = rng.choice(["minimize", "maximize"])
    histories, running = [], []
    for _ in range(rng.randint(2, 9)):
        length, value = rng.randint(1, 12), rng.uniform(0, 1)
        steps = [value := value + rng.gauss(0, 0.1) for _ in range(length)]
        histories.append(steps)
        running.append(rng.random() < 0.6)
    return et, goal, histories, running


@pytest.mark.parametrize("seed", range(24))
def test_the_pruner_decides_as_wandbs_rule(seed):
    et, goal, histories, running = case(seed)
    expected = [s for s, alive in zip(reference_stop(et, goal, histories, running), running,
                                      strict=True) if alive]  # fmt: skip
    assert pruner_stop(et, goal, histories, running) == expected, (et, goal)


def test_wandbs_documented_example():
    """hyperband_stop_runs' docstring example. Bands 1 and 2; the band-2 threshold is 8, so b
    (10) stops, and c (exactly 8) and d (7) go on, as W&B's code decides it."""
    et = {"type": "hyperband", "max_iter": 5, "eta": 2, "s": 2}
    histories = [[10, 9], [10, 10], [10, 8, 8], [10, 7, 7], [10, 6, 6]]
    running = [False, True, True, True, False]
    assert pruner_stop(et, "minimize", histories, running) == [True, False, False]


@pytest.mark.parametrize(
    ("et", "message"),
    [
        ({"type": "hyperband"}, "needs min_iter, or max_iter and s"),
        ({"type": "hyperband", "min_iter": 0}, "min_iter"),
        ({"type": "hyperband", "min_iter": 1, "eta": 1}, "eta"),
        ({"type": "hyperband", "min_iter": 1, "strict": "yes"}, "strict"),
        ({"type": "hyperband", "max_iter": 2, "s": 2, "eta": 3}, "no band"),
        ({"type": "hyperband", "min_iter": 1, "patience": 2}, "patience"),
    ],
)
def test_bad_hyperband_settings_are_one_line(et, message):
    with pytest.raises(RecipeError, match=message):
        read_rule(et)


def test_the_sweep_figure_draws_the_rules_thresholds(tmp_path):
    """hyperband.png marks each reached band at the value the top 1/eta of trials had there."""
    from recipes.search.hyperband_plot import band_marks, plot_hyperband
    from recipes.search.spec import build_spec

    et = {"type": "hyperband", "min_iter": 1, "eta": 2}
    spec = build_spec({"method": "random", "metric": {"name": "val_accuracy", "goal": "maximize"},
                       "early_terminate": et, "run_cap": 4,
                       "parameters": {"learning_rate": {"values": [0.1]}}}, "h")  # fmt: skip
    histories = [[0.2, 0.5, 0.6, 0.7], [0.4, 0.3], [0.1], [0.3, 0.6, 0.8, 0.9]]
    study = optuna.create_study(direction="maximize")
    for values in histories:
        trial = study.ask()
        for step, value in enumerate(values, 1):
            trial.report(value, step)
        study.tell(trial, values[-1])
    assert band_marks(spec, study) == [(1, 0.2), (2, 0.5), (4, 0.7)]  # sorted[int(n / eta)]
    assert plot_hyperband(spec, study, tmp_path / "h.png").stat().st_size > 10_000

"""A wall-clock budget planned from measured times: the stages fill it, whatever the machine."""

from __future__ import annotations

import pytest

from recipes.tuning.plan import FINAL_SHARE, MIN_COARSE, REFINE_EPOCHS, make_plan

# seconds per run, per training example, per evaluation; training-set size
FAST_CPU = {"startup": 4.0, "per_example": 0.004, "eval": 0.5, "train_size": 1257}  # digits
FASHION = {"startup": 8.0, "per_example": 0.0025, "eval": 6.0, "train_size": 55000}
GPU = {"startup": 6.0, "per_example": 2e-5, "eval": 0.3, "train_size": 55000}


@pytest.mark.parametrize("timing", [FAST_CPU, FASHION, GPU], ids=["digits", "fashion", "gpu"])
@pytest.mark.parametrize("left", [240.0, 1700.0, 3500.0])
def test_the_plan_fills_the_budget_within_ten_percent(timing, left):
    """Or, when even its smallest form does not fit, says so (and the tune prints it)."""
    plan = make_plan(left, timing)
    total = sum(plan.planned.values())
    final = plan.planned["final model and test"]
    assert plan.fits() == (total <= 1.1 * left) and plan.coarse >= 2 and plan.refine >= 1
    assert 0.85 * left <= total <= 1.1 * left or (not plan.fits() and final > 0.9 * left), plan


def test_a_large_training_set_gets_more_coarse_trials_on_a_subset():
    plan = make_plan(1700.0, FASHION)
    assert plan.fraction < 1 and plan.coarse >= MIN_COARSE
    assert plan.coarse_samples() == round(plan.fraction * 55000)
    assert make_plan(1700.0, GPU).fraction == 1.0  # fast enough for whole epochs


@pytest.mark.parametrize("timing", [FAST_CPU, FASHION, GPU], ids=["digits", "fashion", "gpu"])
def test_the_final_model_gets_the_larger_part_of_the_budget(timing):
    """An expert searches with short runs and spends most of the time on the long final run."""
    plan = make_plan(1700.0, timing)
    final = plan.planned["final model and test"]
    assert final >= FINAL_SHARE * 1700.0 > sum(plan.planned.values()) - final
    assert plan.affordable_epochs(final) > 2 * REFINE_EPOCHS


def test_refine_runs_the_trials_that_fit_rather_than_none():
    """A coarse stage that overran by seconds costs a refine trial, not the whole refine stage."""
    plan = make_plan(300.0, FAST_CPU)
    one = plan.trial_seconds(REFINE_EPOCHS)
    assert plan.trials_that_fit(plan.refine * one, REFINE_EPOCHS) == plan.refine
    assert plan.trials_that_fit(plan.refine * one - 3.0, REFINE_EPOCHS) == plan.refine - 1
    assert plan.trials_that_fit(one / 2, REFINE_EPOCHS) == 0
    assert plan.trials_that_fit(-10.0, REFINE_EPOCHS) == 0

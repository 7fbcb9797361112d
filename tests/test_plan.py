"""A wall-clock budget planned from measured times: the stages fill it, whatever the machine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recipes.core import runs
from recipes.core.arguments import TrainingArguments
from recipes.core.config import parse_config
from recipes.tuning.budget import FINAL, Budget, Clock, refine_step
from recipes.tuning.coarse import StageSizes, coarse_sweep, first_trial_note, recipe_point
from recipes.tuning.final import final_config
from recipes.tuning.plan import (
    AFTER_TRAINING,
    FINAL_SHARE,
    MAX_FINAL_SHARE,
    MIN_COARSE,
    MIN_REFINE,
    REFINE_EPOCHS,
    final_length,
    load_plan,
    make_plan,
    remeasured,
)
from recipes.tuning.refine_time import recipe_confirmed, refine_trials

# seconds per run, per training example, per evaluation; training-set size
FAST_CPU = {"startup": 4.0, "per_example": 0.004, "eval": 0.5, "train_size": 1257}  # digits
FASHION = {"startup": 8.0, "per_example": 0.0025, "eval": 6.0, "train_size": 55000}
GPU = {"startup": 6.0, "per_example": 2e-5, "eval": 0.3, "train_size": 55000}
SLOW_CPU = {"startup": 8.0, "per_example": 0.0035, "eval": 4.0, "train_size": 55000}  # AVX2 fp32


@pytest.mark.parametrize("timing", [FAST_CPU, FASHION, GPU], ids=["digits", "fashion", "gpu"])
@pytest.mark.parametrize("left", [240.0, 1700.0, 3500.0])
def test_the_plan_fills_the_budget_within_ten_percent(timing, left):
    """Or, when even its smallest form does not fit, says so (and the tune prints it)."""
    plan = make_plan(left, timing)
    total = sum(plan.planned.values())
    final = plan.planned[FINAL]
    assert plan.fits() == (total <= 1.1 * left) and plan.coarse >= 2 and plan.refine >= 1
    assert 0.85 * left <= total <= 1.1 * left or (not plan.fits() and final > 0.9 * left), plan


def test_a_large_training_set_gets_more_coarse_trials_on_a_subset():
    plan = make_plan(1700.0, FASHION)
    assert plan.fraction < 1 and plan.coarse >= MIN_COARSE
    assert plan.samples(plan.fraction) == round(plan.fraction * 55000)
    assert make_plan(1700.0, GPU).fraction == 1.0  # fast enough for whole epochs


@pytest.mark.parametrize("timing", [FAST_CPU, FASHION, GPU], ids=["digits", "fashion", "gpu"])
def test_the_final_model_gets_the_larger_part_of_the_budget(timing):
    """An expert searches with short runs and spends most of the time on the long final run."""
    plan = make_plan(1700.0, timing)
    final = plan.planned[FINAL]
    assert final >= FINAL_SHARE * 1700.0 > sum(plan.planned.values()) - final
    assert plan.affordable_updates(final, 100) > 2 * REFINE_EPOCHS * 100


def test_refine_runs_the_trials_that_fit_rather_than_none():
    """A coarse stage that overran by seconds costs a refine trial, not the whole refine stage."""
    plan = make_plan(300.0, FAST_CPU)
    one = plan.trial_seconds(REFINE_EPOCHS)
    assert plan.trials_that_fit(plan.refine * one, REFINE_EPOCHS) == plan.refine
    assert plan.trials_that_fit(plan.refine * one - 3.0, REFINE_EPOCHS) == plan.refine - 1
    assert plan.trials_that_fit(one / 2, REFINE_EPOCHS) == 0
    assert plan.trials_that_fit(-10.0, REFINE_EPOCHS) == 0


@pytest.mark.parametrize("recipe_epochs", [12, 30])
def test_a_tight_budget_gives_the_final_more_and_searches_on_subsets(recipe_epochs):
    """When the recipe's own epochs do not fit in 60%, the final gets up to 80%; the refine
    trials then train one epoch on a subset (each image once), so that two still fit."""
    plan = make_plan(1700.0, SLOW_CPU, recipe_epochs)
    final = plan.planned[FINAL]
    assert final == pytest.approx(MAX_FINAL_SHARE * 1700.0)
    assert plan.refine >= MIN_REFINE and plan.refine_epochs == 1 and plan.refine_fraction < 1
    assert plan.coarse >= MIN_COARSE and plan.fraction < plan.refine_fraction
    assert 0.9 * 1700.0 <= sum(plan.planned.values()) <= 1.1 * 1700.0


SHAPES = [(900.0, (3, 1.0)), (600.0, (2, 1.0)), (350.0, (1, 1.0)), (200.0, (1, 0.625))]


@pytest.mark.parametrize(("seconds", "shape"), SHAPES)
def test_refine_trials_shorten_to_whole_epochs_then_to_one_epoch_on_a_subset(seconds, shape):
    """Two trials share `seconds`: 3 whole epochs while they fit, then fewer, then a subset."""
    plan = make_plan(1700.0, FASHION, 12)
    assert plan.shape(seconds, 2, REFINE_EPOCHS) == shape


def test_a_roomy_budget_keeps_the_final_at_its_share_and_refines_on_all_the_data():
    plan = make_plan(7200.0, FASHION, 12)  # 12 epochs take 24% of it
    assert plan.planned[FINAL] == pytest.approx(FINAL_SHARE * 7200.0)
    assert plan.refine_fraction == 1.0 and plan.samples(plan.refine_fraction) == 0


def trial(folder: Path, images: int, epochs: list[tuple[float, float]]) -> dict:
    """A finished trial as the engine writes its run folder and the sweep summary its row:
    (train seconds, eval seconds) per epoch, a checkpoint of 1 s after each, 4 s of set-up."""
    folder.mkdir(parents=True)
    at = 4.0
    for i, (train, evaluation) in enumerate(epochs):
        at += train
        record = {"epoch": i + 1, "train_seconds": train, "eval_seconds": evaluation}
        runs.append_jsonl(folder / runs.EPOCHS_FILE, {**record, "seconds": at - 4.0})
        at += evaluation + 1.0
    (folder / runs.RESULTS_FILE).write_text(json.dumps({"train_examples": images}))
    return {"run_dir": str(folder), "seconds": at + 2.0}  # and 2 s to save the model


def test_the_final_is_sized_from_the_trials_own_speed(tmp_path):
    """The timed run's 8 batches said 2.5 ms an image; the trials ran at 4 ms, so the final
    gets the epochs that fit at 4 ms, not the 60% more the timed run promised."""
    plan = make_plan(1700.0, FASHION, 12)
    slow = [
        trial(tmp_path / "a", 5000, [(20.0, 5.0)]),
        trial(tmp_path / "b", 10000, [(40.0, 5.0), (40.0, 5.0), (40.0, 5.0)]),
        {"run_dir": str(tmp_path / "unfinished"), "seconds": None},
    ]
    speed = remeasured(plan, slow)
    assert speed.epoch_seconds == pytest.approx(0.004 * 55000)
    assert speed.eval_seconds == pytest.approx(6.0)  # the evaluation and the checkpoint after it
    assert speed.startup_seconds == pytest.approx(7.0)  # set-up, last checkpoint, the model
    assert speed.affordable_updates(1000.0, 100) == 437 < plan.affordable_updates(1000.0, 100)
    assert remeasured(plan, []) == plan


def test_a_row_without_a_run_folder_is_not_timed(tmp_path, monkeypatch):
    """A row that names no run folder adds nothing, even where the working directory holds the
    files of a run."""
    plan = make_plan(1700.0, FASHION, 12)
    row = trial(tmp_path / "here", 100, [(40.0, 5.0)])
    monkeypatch.chdir(tmp_path / "here")
    assert remeasured(plan, [{"run_dir": None, "seconds": row["seconds"]}]) == plan


@pytest.mark.parametrize("fit, todo", [(1, 0), (2, 2), (3, 3), (9, 4)])
def test_refine_runs_the_trials_that_fit_and_none_when_one_would_run_alone(tmp_path, fit, todo):
    """A lone refine trial would re-run the incumbent and compare it with nothing: its time goes
    to the final model. Two or more run, up to the refine file's run_cap."""
    plan = make_plan(1700.0, SLOW_CPU, 12)
    one = plan.trial_seconds(plan.refine_epochs, plan.refine_fraction)
    clock, notes = Clock(tmp_path, Budget.parse("30m")), []
    clock.steps["spent"] = 1800.0 - plan.planned[FINAL] - (fit + 0.5) * one
    refine = {"run_cap": 4, "num_epochs": plan.refine_epochs}
    assert refine_trials(refine, 1, [], clock, plan, notes) == todo
    assert any("skipped" in n for n in notes) == (todo == 0)


RECIPE_POINT = {"learning_rate": 3e-3, "weight_decay": 0.05}


@pytest.mark.parametrize(
    "first, chosen, timed, skipped",
    [
        (RECIPE_POINT, 0, True, True),  # coarse kept the recipe's values
        (RECIPE_POINT, 4, True, False),  # a challenger won: narrow around it
        ({}, 0, True, False),  # the recipe's values lay outside the ranges: trial 0 is a sample
        ({"weight_decay": 0.05}, 0, True, False),  # its LR did: trial 0's LR is a sample
        (RECIPE_POINT, 0, False, False),  # a budget in trials runs what it asked for
    ],
)
def test_refine_is_skipped_when_the_coarse_stage_keeps_the_recipes_values(
    tmp_path, first, chosen, timed, skipped
):
    """Its planned time goes to the final model, in plan.json too, so a restart plans the same."""
    plan = make_plan(1700.0, FASHION, 12) if timed else None
    before = dict(plan.planned) if plan else {}
    raw = coarse_sweep(None, (3e-3, 0.03), StageSizes(6, 2), TrainingArguments(), "none")
    notes: list[str] = []
    assert recipe_confirmed(raw, first, {"trial": chosen}, tmp_path, plan, notes) is skipped
    assert any("refine skipped" in n for n in notes) is skipped
    if skipped:
        assert refine_step(1) not in plan.planned
        assert plan.planned[FINAL] == pytest.approx(before[FINAL] + before[refine_step(1)])
        assert load_plan(tmp_path) == plan
        assert recipe_confirmed(raw, first, {"trial": chosen}, tmp_path, plan, notes)  # restart
        assert load_plan(tmp_path).planned == plan.planned
    elif plan:
        assert plan.planned == before


@pytest.mark.parametrize(
    "lr, decay, kept, says",
    [
        (3e-3, 0.05, RECIPE_POINT, "the recipe's own values"),
        (1e-4, 0.05, {"weight_decay": 0.05}, "learning_rate 0.0001 lies outside 0.0003 to 0.03"),
        (1e-4, 1.0, {}, "outside the coarse ranges: trial 0 is sampled"),
    ],
)
def test_coarse_trial_0_runs_what_of_the_recipe_its_ranges_hold_and_says_so(lr, decay, kept, says):
    """A recipe value outside its range is sampled in trial 0, and the report names it."""
    training = TrainingArguments(learning_rate=lr, weight_decay=decay)
    raw = coarse_sweep(None, (3e-3, 0.03), StageSizes(6, 2), training, "none")
    first = recipe_point(raw, training)
    assert first == kept
    assert says in first_trial_note(raw, first, training)


@pytest.mark.parametrize("seconds", [400.0, 1000.0, 1500.0])
def test_the_final_spends_what_is_left_and_stops_its_last_epoch_part_way(seconds):
    """Whole epochs leave up to one epoch unspent; the updates of part of one more fill it,
    beside that epoch's evaluation and the passes after training."""
    plan = make_plan(1700.0, FASHION, 12)
    t = parse_config(None, ["--per_device_train_batch_size", "128"]).training
    epochs, steps = final_length(plan, seconds, t, 1)
    per_epoch = 430  # 55000 images in batches of 128
    assert epochs == -(-steps // per_epoch) and steps % per_epoch != 0

    def cost(updates: int) -> float:
        passes = -(-updates // per_epoch) + AFTER_TRAINING
        return plan.startup_seconds + updates / per_epoch * plan.epoch_seconds + passes * 6.0

    assert cost(steps) <= seconds < cost(steps + 1) + 6.0  # one more update, or its evaluation


def test_the_final_never_trains_fewer_epochs_than_the_chosen_trial():
    t = parse_config(None, ["--per_device_train_batch_size", "128"]).training
    assert final_length(make_plan(1700.0, FASHION, 12), 50.0, t, 2) == (2, 860)


def test_the_final_trains_the_chosen_values_on_all_the_data_for_the_updates_left(tmp_path):
    """Under a budget in trials it trains twice the chosen trial's epochs instead."""
    best = {"args": ["--learning_rate=0.01", "--num_epochs=1", "--max_train_samples=300",
                     "--output_dir=elsewhere"], "epochs": 1}  # fmt: skip
    speed = make_plan(300.0, FAST_CPU)
    config = final_config(None, best, tmp_path, speed, 200.0)
    t = config.training
    assert t.learning_rate == 0.01 and config.data.max_train_samples == 0
    assert (t.num_epochs, t.max_steps) == final_length(speed, 200.0, t, 1)
    kept = speed.startup_seconds + (AFTER_TRAINING - 1) * speed.eval_seconds  # after its epochs
    assert t.max_seconds == pytest.approx(200.0 - kept)  # its epochs keep to the time left
    assert t.max_steps % 20 != 0 and t.output_dir == str(tmp_path / "final")  # 20 updates/epoch
    counted = final_config(None, best, tmp_path, None, 200.0).training
    assert (counted.num_epochs, counted.max_steps) == (2, 0)

"""A stage hands on its best trial only when it beats the incumbent beyond the noise."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from optuna.trial import create_trial

from recipes.core.errors import RecipeError
from recipes.tuning.champion import Z, champion, difference_error

RECIPE = {"learning_rate": 0.003, "weight_decay": 0.05}


def study_of(tmp_path: Path, accuracies: list[float], n: int) -> optuna.Study:
    """Finished trials scored on n validation images; trial 0 ran the recipe's values."""
    study = optuna.create_study(direction="maximize")
    for number, accuracy in enumerate(accuracies):
        run_dir = tmp_path / f"trial_{number:03d}"
        run_dir.mkdir()
        (run_dir / "results.json").write_text(json.dumps({"val_samples": n}))
        values = RECIPE if number == 0 else {"learning_rate": 0.01 * number, "weight_decay": 0.0}
        attrs = {"values": values, "run_dir": str(run_dir), "args": []}
        study.add_trial(create_trial(value=accuracy, user_attrs=attrs))
    return study


@pytest.mark.parametrize(
    ("accuracies", "n", "chosen"),
    [
        ([0.730, 0.737, 0.70], 5000, 0),  # 0.7 points < 2 standard errors (1.8) on 5,000
        ([0.730, 0.760, 0.70], 5000, 1),  # 3 points: a clear win
        ([0.985, 0.996], 270, 0),  # 3 of 270 images: noise on digits
        ([0.90, 0.93], 270, 0),  # even 8 images are within 2 standard errors of 270
        ([0.90, 0.93], 10000, 1),  # the same lead on 10,000 images is not
        ([0.95, 0.90], 5000, 0),  # the incumbent is the best
    ],
)
def test_the_incumbent_stays_unless_beaten_beyond_two_standard_errors(tmp_path, accuracies, n,
                                                                      chosen):  # fmt: skip
    choice, why = champion(study_of(tmp_path, accuracies, n), RECIPE)
    assert choice["trial"] == chosen and choice["value"] == accuracies[chosen], why
    lead = max(accuracies) - accuracies[0]
    assert (chosen == 1) == (lead > Z * difference_error(max(accuracies), accuracies[0], n))


def test_without_an_incumbent_the_best_trial_is_chosen(tmp_path):
    study = study_of(tmp_path, [0.730, 0.737], 5000)
    assert champion(study, None)[0]["trial"] == 1
    other = {"learning_rate": 0.5}  # trial 0 did not run these: nothing to defend
    assert champion(study, other)[0]["trial"] == 1


def test_a_stage_with_no_finished_trial_is_one_line(tmp_path):
    with pytest.raises(RecipeError, match="no trial finished"):
        champion(optuna.create_study(direction="maximize"), RECIPE)

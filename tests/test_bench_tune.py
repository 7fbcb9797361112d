"""The tune benchmark's plain searches are real W&B sweep files, and its limit check can fail."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts"))

import bench_tune  # noqa: E402

from recipes.core.config import parse_config  # noqa: E402
from recipes.core.errors import RecipeError  # noqa: E402
from recipes.search.spec import load_sweep  # noqa: E402


@pytest.mark.parametrize(("method", "sampler"), [("random", "random"), ("bayes", "bayes")])
def test_the_plain_searches_are_sweep_files_over_lr_and_weight_decay(tmp_path, method, sampler):
    recipe = str(ROOT / "recipes" / "configs" / "fashion" / "scratch.yaml")
    path = bench_tune.sweep_file(recipe, method, 6, (4, 1500, 280.0), tmp_path / "plain.yaml")
    spec = load_sweep(path)
    assert spec.method == sampler and spec.run_cap == 6
    assert (spec.fixed["num_epochs"], spec.fixed["max_steps"]) == (4, 1500)
    assert spec.fixed["max_seconds"] == 280.0  # each trial held to its share of the budget
    assert sorted(p.name for p in spec.params) == ["learning_rate", "weight_decay"]
    assert spec.recipe == recipe and "warmup_epochs" not in spec.fixed  # the recipe's 1 fits


def test_a_plain_trial_too_short_for_the_recipes_warmup_warms_up_briefly(tmp_path):
    """One-epoch trials cannot hold the recipe's one-epoch warmup (the run would be refused)."""
    recipe = str(ROOT / "recipes" / "configs" / "fashion" / "scratch.yaml")
    path = bench_tune.sweep_file(recipe, "random", 6, (1, 0, 60.0), tmp_path / "plain.yaml")
    spec = load_sweep(path)
    assert spec.fixed["warmup_epochs"] == 0.25 and spec.fixed["num_epochs"] == 1


def write_trials(folder: Path, rows: list[str]) -> None:
    folder.mkdir(parents=True)
    (folder / "trials.csv").write_text("\n".join(["trial,learning_rate,weight_decay", *rows]))


def test_a_trial_outside_the_stated_limits_is_named(tmp_path):
    write_trials(tmp_path / "coarse", ["0,0.003,0.05", "1,0.01,0.0001"])
    assert bench_tune.out_of_limits(tmp_path) == []
    write_trials(tmp_path / "coarse" / "refine", ["0,0.003,34", "1,2.0,0.01"])
    assert bench_tune.out_of_limits(tmp_path) == [
        "refine trial 0: weight_decay=34",
        "refine trial 1: learning_rate=2.0",
    ]


def test_a_seeded_copy_trains_the_same_recipe_from_another_seed(tmp_path):
    recipe = str(ROOT / "recipes" / "configs" / "fashion" / "scratch.yaml")
    own = parse_config(recipe)
    copy = parse_config(bench_tune.recipe_copy(recipe, {"seed": "7"}, tmp_path))
    assert copy.training.seed == 7 != own.training.seed
    assert replace(copy.training, seed=own.training.seed) == own.training
    assert (copy.data, copy.model) == (own.data, own.model)
    embedded = bench_tune.recipe_copy(None, {"seed": "7"}, tmp_path)
    assert parse_config(embedded).data == parse_config().data


def test_a_users_starting_point_changes_only_the_values_set(tmp_path):
    recipe = str(ROOT / "recipes" / "configs" / "fashion" / "scratch.yaml")
    args = argparse.Namespace(recipe_seed=None, set=["learning_rate=1e-4", "weight_decay=0.01"])
    copy = parse_config(bench_tune.recipe_copy(recipe, bench_tune.changes(args), tmp_path))
    own = parse_config(recipe).training
    assert (copy.training.learning_rate, copy.training.weight_decay) == (1e-4, 0.01)
    assert replace(copy.training, learning_rate=own.learning_rate, weight_decay=0.05) == own
    with pytest.raises(RecipeError, match="learnin_rate"):
        bench_tune.recipe_copy(recipe, {"learnin_rate": "1e-4"}, tmp_path)

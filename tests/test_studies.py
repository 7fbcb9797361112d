"""The figure studies' shared parts: resuming, spreads over seeds, and their sweep files."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts"))

from studies import common, decay, grid, lr  # noqa: E402

from recipes.search.spec import build_spec  # noqa: E402


def test_a_finished_run_is_read_back_and_a_half_written_one_redone(tmp_path: Path):
    calls = []

    def run() -> dict:
        calls.append(1)
        return {"accuracy": 0.5}

    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "partial.bin").write_text("from a killed run")
    assert common.resumable(tmp_path / "run", run) == {"accuracy": 0.5}
    assert not (tmp_path / "run" / "partial.bin").exists()
    assert common.resumable(tmp_path / "run", run) == {"accuracy": 0.5}
    assert len(calls) == 1


def test_spreads_are_over_repeats():
    assert common.spread([0.9, 0.92, 0.94]) == "0.9200 ± 0.0200 (n=3)"
    assert common.spread([812.4], digits=0) == "812 (n=1)"
    table = common.table(["a", "b"], [[1, 2]])
    assert table.splitlines() == ["| a | b |", "|---|---|", "| 1 | 2 |"]


@pytest.mark.parametrize("method", ["grid", "random"])
def test_grid_and_random_sweeps_are_valid_wandb_files_of_nine_trials(method: str):
    spec = build_spec(grid.sweep(method, seed=3, quick=True), method)
    assert spec.run_cap == 9
    if method == "grid":
        assert spec.grid_size() == 9
        assert grid.spaced(1e-4, 1e-1, 3, log=True) == [0.000316, 0.00316, 0.0316]


def test_the_four_learning_rates_sit_around_the_range_test():
    rates = lr.learning_rates({"suggested_lr": 0.02, "lr_at_min": 0.2})
    assert rates == pytest.approx({"very high": 2.0, "high": 0.2, "good": 0.02, "low": 2e-4})
    fallback = lr.learning_rates({"suggested_lr": None, "lr_at_min": 0.2})
    assert fallback["good"] == pytest.approx(0.02)


def test_the_decay_table_puts_the_best_schedule_first():
    rows = [
        {"family": f, "test_accuracy": acc + d, "val_accuracy": [0.5, acc]}
        for f, acc in zip(decay.FAMILIES, (0.80, 0.90, 0.85, 0.70, 0.75), strict=True)
        for d in (0.0, 0.01)
    ]
    lines = decay.summary(rows).splitlines()[2:]
    assert [line.split(" | ")[0] for line in lines] == [
        "| cosine",
        "| linear",
        "| step",
        "| constant",
        "| inverse_sqrt",
    ]
    assert "(n=2)" in lines[0]

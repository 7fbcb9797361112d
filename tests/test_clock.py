"""The tune's clock: a stopped step's time still counts, and a restart sizes steps as before."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from recipes.tuning.budget import FINAL, Budget, Clock, refine_step
from recipes.tuning.plan import make_plan
from recipes.tuning.refine_time import refine_trials
from tests.conftest import PYTHON, ROOT
from tests.test_plan import SLOW_CPU

BUDGET = Budget.parse("30m")
FOREVER = """
import sys, time
from pathlib import Path
from recipes.tuning.budget import Budget, Clock
with Clock(Path(sys.argv[1]), Budget.parse("30m"), beat=0.2).step("coarse"):
    time.sleep(600)
"""


def counted(folder: Path, step: str) -> float:
    path = folder / "timings.json"
    return json.loads(path.read_text()).get(step, 0.0) if path.is_file() else 0.0


def test_a_killed_step_keeps_its_time_up_to_its_last_beat(tmp_path):
    """SIGKILL runs no `finally`: the step's time was written as it went."""
    proc = subprocess.Popen([PYTHON, "-c", FOREVER, str(tmp_path)], cwd=ROOT)
    try:
        deadline = time.time() + 120
        while counted(tmp_path, "coarse") < 1.0 and time.time() < deadline:
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    again = Clock(tmp_path, BUDGET)
    assert again.steps["coarse"] >= 1.0
    assert again.left() == pytest.approx(BUDGET.seconds - again.steps["coarse"])


@pytest.mark.parametrize("stop", [KeyboardInterrupt, RuntimeError])
def test_a_step_stopped_by_ctrl_c_or_an_error_counts_its_time(tmp_path, stop):
    clock = Clock(tmp_path, BUDGET)
    with pytest.raises(stop), clock.step(FINAL):
        time.sleep(0.3)
        raise stop()
    assert Clock(tmp_path, BUDGET).steps[FINAL] >= 0.3


def test_a_restarted_step_adds_to_its_time(tmp_path):
    for _ in range(2):
        with Clock(tmp_path, BUDGET).step(FINAL):
            time.sleep(0.2)
    assert counted(tmp_path, FINAL) >= 0.4


def test_a_restart_sizes_refine_and_the_final_as_the_first_start_did(tmp_path):
    """Its sweep and final model must be the ones the first start began, though the stopped
    start's time now counts and less is left."""
    plan = make_plan(1700.0, SLOW_CPU, 12)
    one = plan.trial_seconds(plan.refine_epochs, plan.refine_fraction)
    refine = {"run_cap": 4, "num_epochs": plan.refine_epochs}
    first = Clock(tmp_path, BUDGET)
    first.steps["spent"] = 1800.0 - plan.planned[FINAL] - 3.5 * one
    todo, final = refine_trials(refine, 1, [], first, plan, []), first.left_at(FINAL)
    again = Clock(tmp_path, BUDGET)
    again.steps.update(first.steps, stopped=2 * one)
    assert again.left() < final and todo == 3
    assert refine_trials(refine, 1, [], again, plan, []) == todo
    assert again.left_at(FINAL) == final
    assert again.left_at(refine_step(2)) == again.left()  # a step not begun before: now


def test_a_budget_in_trials_pins_nothing(tmp_path):
    clock = Clock(tmp_path, Budget.parse("12"))
    assert clock.left_at(FINAL) == float("inf")
    assert not (tmp_path / "budget_left.json").exists()

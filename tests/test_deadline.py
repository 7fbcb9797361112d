"""max_seconds: the run's end moves to what the time left affords, the LR schedule compressed to
end there, the same on every process and across a resume."""

from __future__ import annotations

import dataclasses
import math
from itertools import pairwise
from pathlib import Path

import pytest
import torch

from recipes.core import runs
from recipes.core.config import parse_config
from recipes.schedules import Warp, advance, build_scheduler
from recipes.training.deadline import keep_time
from recipes.training.engine import prepare, train
from tests.conftest import FAST
from tests.test_engine import copy_interrupted

PLANNED, WARMUP = 100, 10


def scheduler(name: str, **kwargs) -> torch.optim.lr_scheduler.LRScheduler:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    return build_scheduler(name, optimizer, PLANNED, WARMUP, **kwargs)


def lrs(sched, warp: Warp, steps: range) -> list[float]:
    out = []
    for s in steps:
        advance(sched, warp(s))
        out.append(sched.get_last_lr()[0])
    return out


@pytest.mark.parametrize("name", ["cosine", "linear", "step", "warmup_stable_decay"])
def test_an_unmoved_warp_is_the_schedule_itself(name: str) -> None:
    kwargs = {"step": {"step_size": 30}, "warmup_stable_decay": {"num_decay_steps": 20}}
    plain, warped = scheduler(name, **kwargs.get(name, {})), scheduler(name, **kwargs.get(name, {}))
    expected = []
    for _ in range(1, PLANNED + 1):
        plain.step()
        expected.append(plain.get_last_lr()[0])
    assert lrs(warped, Warp(PLANNED, PLANNED), range(1, PLANNED + 1)) == expected


@pytest.mark.parametrize(("at", "end"), [(5, 30), (40, 60), (40, 90)])
def test_a_moved_end_keeps_the_lr_continuous_and_ends_the_cosine_at_zero(at: int, end: int):
    """Moved at update `at` (during warmup, or after it) to end at update `end`."""
    sched, warp = scheduler("cosine"), Warp(PLANNED, PLANNED)
    before = lrs(sched, warp, range(1, at + 1))
    warp.end_at(at, end)
    assert warp(at) == at  # nothing jumps at the re-plan
    after = lrs(sched, warp, range(at + 1, end + 1))
    assert after[-1] == pytest.approx(0.0, abs=1e-12)
    rate = (PLANNED - at) / (end - at)  # schedule updates per run update from here
    assert abs(after[0] - before[-1]) <= rate / WARMUP + 1e-12  # the steepest slope: warmup's
    peak = max(WARMUP - at, 0)  # the compressed warmup's last update, from here
    decay = after[math.ceil(peak / rate) :]
    assert all(b <= a + 1e-12 for a, b in pairwise(decay))


def test_a_later_re_plan_can_give_back_updates_but_never_past_the_planned_end() -> None:
    warp = Warp(PLANNED, PLANNED)
    warp.end_at(40, 60)
    warp.end_at(50, 90)  # the machine sped up again
    assert warp(90) == pytest.approx(PLANNED)
    assert 40 < warp(50) < warp(70) < PLANNED


def prepared(tmp_path: Path, *extra: str):
    args = [*FAST, "--num_epochs", "10", "--max_seconds", "100", *extra]
    return prepare(parse_config(None, [*args, "--output_dir", str(tmp_path / "run")]))


def test_the_end_moves_to_what_the_time_left_affords(tmp_path: Path) -> None:
    """20 updates an epoch at 0.1s each plus a 1s evaluation: 3s an epoch. At update 0 with 10s
    left (one evaluation kept for the last pass): 9s -> 3 epochs = 60 updates."""
    loop = prepared(tmp_path)
    assert (loop.plan.per_epoch, loop.plan.total) == (20, 200)
    keep_time(loop, spent=90.0, update_seconds=0.1, eval_seconds=1.0)
    assert loop.plan.total == 60 and loop.plan.epochs == 3
    assert loop.state["schedule"] == dataclasses.asdict(Warp(200, 60, 0, 0.0))
    keep_time(loop, spent=99.9, update_seconds=0.1, eval_seconds=1.0)  # no time: one more
    assert loop.plan.total == 1 and loop.warp(1) == pytest.approx(200)  # at the schedule's end


def test_a_run_out_of_time_before_its_moved_end_ends_on_one_update_at_the_schedules_end(tmp_path):
    """Moved to end at update 43, the time is up at the epoch's end at update 40: the cosine
    would stop short of zero, so the run makes one more update, its LR at the schedule's end."""
    loop = prepared(tmp_path)
    loop.warp.end_at(0, 43)
    loop.plan = dataclasses.replace(loop.plan, total=43)
    loop.state["step"] = 40
    keep_time(loop, spent=100.0, update_seconds=0.1, eval_seconds=1.0)
    assert loop.plan.total == 41 and loop.warp(41) == pytest.approx(200)
    assert loop.state["schedule"]["total"] == 41


def test_the_end_is_said_when_it_moves_far_and_at_the_last_update(tmp_path: Path, capsys):
    """Planned 200 updates, re-planned at update 0 as time goes: the end is said at its first
    move (to 60), not at a move of under 2% of the plan (4 updates) since it was said (to 57),
    again at one of 5 from what was said (to 55), and for the one last update."""
    loop = prepared(tmp_path)
    said = []
    for spent in (90.0, 90.3, 90.5, 99.9):
        keep_time(loop, spent=spent, update_seconds=0.1, eval_seconds=1.0)
        out = capsys.readouterr().out
        said.append(loop.plan.total if "max_seconds:" in out else None)
    assert said == [60, None, 55, 1]


def test_more_time_than_planned_never_lengthens_the_run(tmp_path: Path) -> None:
    loop = prepared(tmp_path)
    keep_time(loop, spent=0.0, update_seconds=0.001, eval_seconds=0.01)
    assert loop.plan.total == 200 and "schedule" not in loop.state


def test_a_run_that_made_its_last_update_is_over_however_much_time_is_left(tmp_path: Path):
    """The last epoch's end, reached after a slow spell: the run stays ended."""
    loop = prepared(tmp_path)
    keep_time(loop, spent=90.0, update_seconds=0.1, eval_seconds=1.0)
    loop.state["step"] = loop.plan.total
    keep_time(loop, spent=0.0, update_seconds=0.001, eval_seconds=0.01)
    assert loop.plan.total == 60 and loop.state["schedule"]["total"] == 60


def test_a_limited_run_ends_on_time_with_its_schedule_finished(tmp_path: Path) -> None:
    """Planned for 100 epochs, given a few seconds: it stops early, with the cosine at zero on
    its last update, and a copy killed after a moved end resumes on the moved schedule."""
    run_dir = tmp_path / "run"
    args = [*FAST, "--num_epochs", "100", "--max_seconds", "6", "--save_total_limit", "100"]
    done = train(parse_config(None, [*args, "--output_dir", str(run_dir)]))
    assert done["planned_steps"] == 2000 and 0 < done["steps"] < 2000
    assert not done["stopped_early"] and "train_eval_accuracy" in done
    epochs = runs.read_jsonl(run_dir / runs.EPOCHS_FILE)
    assert epochs[-1]["lr"] == pytest.approx(0.0, abs=1e-9)
    assert all(b["lr"] <= a["lr"] for a, b in pairwise(epochs))
    moved = [c for c in runs.checkpoint_dirs(run_dir) if "schedule" in runs.read_state(c)]
    state = runs.read_state(moved[0])
    copy_interrupted(run_dir, tmp_path / "copy", state["step"])
    loop = prepare(parse_config(None, [*args, "--output_dir", str(tmp_path / "copy")]))
    assert dataclasses.asdict(loop.warp) == state["schedule"]
    assert loop.plan.total == state["schedule"]["total"] and loop.state["seconds"] > 0
    record = next(e for e in epochs if e["step"] == state["step"])
    assert loop.scheduler.get_last_lr()[0] == pytest.approx(record["lr"], rel=1e-12)

"""Sweeps shared by several processes on a real PostgreSQL server (the one `.ci/run` starts).

Each test gets a fresh database on the server named by RECIPES_TEST_POSTGRES.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from recipes.core import runs
from recipes.core.errors import RecipeError
from recipes.search.storage import make_storage
from tests.conftest import PYTHON, ROOT, run_cli
from tests.test_search import sweep_file


@pytest.fixture
def postgres_url() -> str:
    """A new, empty database on the test server; dropped afterwards."""
    base = os.environ.get("RECIPES_TEST_POSTGRES")
    if not base:
        if os.environ.get("RECIPES_REQUIRE_POSTGRES"):
            pytest.fail("RECIPES_REQUIRE_POSTGRES is set but RECIPES_TEST_POSTGRES is not")
        pytest.skip("no PostgreSQL server: set RECIPES_TEST_POSTGRES (bash .ci/run starts one)")
    import psycopg

    name = f"sweep_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base, autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    yield f"{base.rsplit('/', 1)[0]}/{name}"
    with psycopg.connect(base, autocommit=True) as connection:
        connection.execute(f"DROP DATABASE {name} WITH (FORCE)")


def start(args: list[str], folder: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [PYTHON, "-m", "recipes", *args],
        cwd=ROOT,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "RECIPES_CACHE": str(folder / "cache")},
    )


def finish(procs: list[subprocess.Popen], timeout: float = 400) -> list[tuple[int, str, str]]:
    out = []
    for proc in procs:
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            stdout, stderr = proc.communicate()
        out.append((proc.returncode, stdout, stderr))
    return out


def load(url: str, name: str) -> list:
    return optuna.load_study(study_name=name, storage=url).get_trials(deepcopy=False)


def test_three_processes_started_at_once_share_a_grid(postgres_url, tmp_path):
    """A fresh database, three machines at the same moment: each grid point runs once."""
    grid = {"learning_rate": {"values": [1e-3, 3e-3, 1e-2]}, "weight_decay": {"values": [0, 0.1]}}
    path = sweep_file(tmp_path, "shared", method="grid", parameters=grid)
    args = ["sweep", str(path), "--storage", postgres_url, "--output_dir"]
    procs = [start([*args, str(tmp_path / m)], tmp_path) for m in ("m1", "m2", "m3")]
    results = finish(procs)
    assert [code for code, _, _ in results] == [0, 0, 0], [err[-2000:] for _, _, err in results]
    trials = [t for t in load(postgres_url, "shared") if "skipped" not in t.user_attrs]
    assert all(t.state == TrialState.COMPLETE for t in trials)
    points = sorted(tuple(t.params.values()) for t in trials)
    assert points == sorted((lr, wd) for lr in (1e-3, 3e-3, 1e-2) for wd in (0, 0.1))
    assert sum("best: trial" in out for _, out, _ in results) == 1  # one summary
    for t in trials:
        assert Path(t.user_attrs["run_dir"]).parent.parent.name in ("m1", "m2", "m3")


def test_run_cap_counts_across_processes(postgres_url, tmp_path):
    """run_cap: 3 with two processes on the database: exactly 3 trials run."""
    space = {"learning_rate": {"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-2}}
    path = sweep_file(tmp_path, "capped", method="random", run_cap=3, parameters=space)
    procs = [
        start(["sweep", str(path), "--storage", postgres_url, "--output_dir", str(tmp_path / m),
               "--seed", str(seed)], tmp_path)
        for seed, m in enumerate(("m1", "m2"))
    ]  # fmt: skip
    results = finish(procs)
    assert [code for code, _, _ in results] == [0, 0], [err[-2000:] for _, _, err in results]
    ran = [t for t in load(postgres_url, "capped") if "skipped" not in t.user_attrs]
    assert len(ran) == 3 and all(t.state == TrialState.COMPLETE for t in ran)


def checkpointed_trial(url: str, pid: int, deadline: float):
    """The first trial of process `pid` with a whole saved checkpoint (one still being written
    when the process is killed is not resumed from), waiting for it."""
    while time.time() < deadline:
        try:
            trials = load(url, "killed")
        except KeyError:
            trials = []
        for t in trials:
            run = t.user_attrs.get("run_dir")
            if t.user_attrs.get("pid") == pid and run and runs.checkpoint_dirs(Path(run)):
                return t
        time.sleep(0.3)
    raise AssertionError("no trial of the first process reached a checkpoint in time")


def test_a_killed_worker_s_trial_is_finished_by_another(postgres_url, tmp_path):
    """SIGKILL a process mid-trial: its heartbeat stops, the other process fails the stale
    trial and runs it again from its last checkpoint; the killed attempt stays in the record."""
    grid = {"learning_rate": {"values": [1e-3, 3e-3, 1e-2]}, "num_epochs": {"value": 6}}
    path = sweep_file(tmp_path, "killed", method="grid", parameters=grid)
    args = ["sweep", str(path), "--storage", postgres_url, "--heartbeat", "2"]
    first = start([*args, "--output_dir", str(tmp_path / "m1")], tmp_path)
    try:
        victim = checkpointed_trial(postgres_url, first.pid, time.time() + 240)
        second = start([*args, "--output_dir", str(tmp_path / "m2")], tmp_path)
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.communicate()
    ((code, out, err),) = finish([second])
    assert code == 0, err[-3000:]
    trials = {t.number: t for t in load(postgres_url, "killed")}
    assert trials[victim.number].state == TrialState.FAIL  # the killed attempt is kept
    retry = next(
        t for t in trials.values() if t.system_attrs.get("retry_history") == [victim.number]
    )
    assert retry.state == TrialState.COMPLETE and retry.user_attrs["pid"] == second.pid
    assert retry.user_attrs["run_dir"] == victim.user_attrs["run_dir"]
    assert "resumed at step" in out + err
    done = [t for t in trials.values() if t.state == TrialState.COMPLETE]
    assert sorted(t.params["learning_rate"] for t in done) == [1e-3, 3e-3, 1e-2]


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("postgresql://me:s3cret@10.255.255.1:5432/sweeps", "cannot open the sweep storage"),
        ("postgresql://me:s3cret@127.0.0.1:9/sweeps", "cannot open the sweep storage"),
        ("postgresql+psycopg2://me:s3cret@127.0.0.1/sweeps", "pip install psycopg2-binary"),
        ("mysql+pymysql://me:s3cret@127.0.0.1/sweeps", "pip install PyMySQL"),
        ("not a url", "is not a database URL"),
    ],
)
def test_a_storage_that_cannot_be_used_is_one_line(tmp_path, url, needle):
    path = sweep_file(tmp_path, "bad", method="grid", parameters={"learning_rate": {"value": 1e-3}})
    done = run_cli("sweep", str(path), "--storage", url, "--output_dir", str(tmp_path / "out"))
    (line,) = done.stderr.strip().splitlines()
    assert done.returncode == 2 and needle in line and "s3cret" not in line, done.stderr


def test_an_unreachable_server_fails_within_ten_seconds():
    began = time.perf_counter()
    with pytest.raises(RecipeError, match="cannot open the sweep storage .*:\\*\\*\\*@"):
        make_storage("postgresql://me:s3cret@10.255.255.1:5432/sweeps", heartbeat=60)
    assert time.perf_counter() - began < 10

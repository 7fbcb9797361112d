"""A sweep file means what it means to `wandb agent`: without run_cap a random or bayes sweep
runs until stopped (Ctrl-C ends it cleanly, finished trials kept), and a file without program or
command is flagged at --dry-run with the command to add."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import time

import optuna
from optuna.trial import TrialState

from recipes.cli import main
from recipes.search.workers import start_ignoring_ctrl_c
from tests.conftest import PYTHON, ROOT
from tests.test_search import sweep_file

SPACE = {"learning_rate": {"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-2}}


def test_dry_run_accepts_a_sweep_without_run_cap(tmp_path, capsys):
    path = sweep_file(tmp_path, "open", method="random", parameters=SPACE)
    main(["sweep", str(path), "--dry-run"])
    assert "until stopped" in capsys.readouterr().out


def test_ctrl_c_ends_an_open_sweep_and_keeps_its_trials(tmp_path):
    path = sweep_file(tmp_path, "open", method="random", parameters=SPACE)
    url = f"sqlite:///{tmp_path / 'open.db'}"
    command = [PYTHON, "-m", "recipes", "sweep", str(path), "--workers", "2", "--storage", url,
               "--output_dir", str(tmp_path / "out")]  # fmt: skip
    proc = subprocess.Popen(command, cwd=ROOT, start_new_session=True, text=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    deadline, done = time.time() + 240, []
    while len(done) < 3 and time.time() < deadline:
        time.sleep(1)
        try:
            trials = optuna.load_study(study_name="open", storage=url).get_trials(deepcopy=False)
        except KeyError:
            continue
        done = [t for t in trials if t.state == TrialState.COMPLETE]
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the whole process group
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in err, err[-3000:]
    assert err.strip().splitlines()[-1].startswith("interrupted: sweep stopped")
    trials = optuna.load_study(study_name="open", storage=url).get_trials(deepcopy=False)
    assert sum(t.state == TrialState.COMPLETE for t in trials) >= 3


def ignores_ctrl_c(queue) -> None:
    queue.put(signal.getsignal(signal.SIGINT) == signal.SIG_IGN)


def test_a_spawned_worker_ignores_ctrl_c_until_it_installs_its_handler():
    """A Ctrl-C that lands while a worker still imports ends nothing with a traceback; the sweep
    process, which notes it and stops the workers, still hears it."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    proc = context.Process(target=ignores_ctrl_c, args=(queue,))
    start_ignoring_ctrl_c([proc])
    assert queue.get(timeout=120) is True
    proc.join(timeout=60)
    assert signal.getsignal(signal.SIGINT) is not signal.SIG_IGN


def test_dry_run_of_a_file_without_program_or_command_shows_the_command_to_add(tmp_path, capsys):
    import yaml

    raw = {"method": "random", "metric": {"name": "val_accuracy"}, "parameters": SPACE}
    path = tmp_path / "bare.yaml"
    path.write_text(yaml.safe_dump(raw))
    main(["sweep", str(path), "--dry-run"])
    (note,) = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("note:")]
    assert "no program or command" in note and '"-m", "recipes", "train", "${args}"' in note


def test_metric_target_ends_the_sweep_once_a_trial_reaches_it(tmp_path, capsys):
    """W&B finishes a sweep when any run reaches metric.target; the rest of the grid never runs."""
    metric = {"name": "val_accuracy", "goal": "maximize", "target": 0.0}
    grid = {"learning_rate": {"values": [1e-3, 2e-3, 3e-3]}}
    path = sweep_file(tmp_path, "target", method="grid", metric=metric, parameters=grid)
    url = f"sqlite:///{tmp_path / 'target.db'}"
    main(["sweep", str(path), "--storage", url, "--output_dir", str(tmp_path / "out")])
    trials = optuna.load_study(study_name="target", storage=url).get_trials(deepcopy=False)
    assert [t.state for t in trials if t.state != TrialState.WAITING] == [TrialState.COMPLETE]

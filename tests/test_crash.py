"""Crash safety: SIGKILL at random moments and a restart lose nothing; Ctrl-C checkpoints;
state files are replaced whole; a torn JSON line is skipped; a malicious .pth is not unpickled."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import optuna
import torch
from optuna.trial import TrialState
from safetensors.torch import load_file

from recipes.core import runs
from recipes.core.files import append_line, read_json_lines, write_atomic
from tests.conftest import FAST, PYTHON, ROOT, run_cli
from tests.kill_harness import run_with_kills
from tests.test_search import sweep_file

CI_KILLS = 3
STEPS = [*FAST, "--num_epochs", "3", "--max_train_samples", "384", "--per_device_train_batch_size",
         "16", "--augment", "false", "--save_steps", "1", "--save_total_limit", "1",
         "--per_device_eval_batch_size", "512"]  # fmt: skip


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "model" / "model.safetensors"))


def saved_step(run: Path) -> int:
    """The step of the newest whole checkpoint of `run` (0 before the first)."""
    done = (p.parent.name for p in (run / runs.CHECKPOINTS).glob(f"step_*/{runs.STATE_FILE}"))
    return max((int(name.removeprefix("step_")) for name in done), default=0)


def test_killed_training_ends_with_the_weights_of_an_uninterrupted_run(tmp_path):
    reference = run_cli("train", *STEPS, "--output_dir", str(tmp_path / "reference"))
    assert reference.returncode == 0, reference.stderr[-2000:]
    run = tmp_path / "killed"
    command = [PYTHON, "-m", "recipes", "train", *STEPS, "--output_dir", str(run)]
    whole = 3 * 384 // 16  # updates; each kill lands 10-30% of a run past where its start resumed
    outcome = run_with_kills(command, CI_KILLS, 0, (0.1 * whole, 0.3 * whole),
                             progress=lambda: saved_step(run), cwd=ROOT)  # fmt: skip
    assert outcome.returncode == 0, outcome.stderr[-2000:]
    assert outcome.kills == CI_KILLS  # all land mid-run, however fast or loaded the machine
    ours, theirs = weights(run), weights(tmp_path / "reference")
    assert ours.keys() == theirs.keys()
    for name in ours:
        torch.testing.assert_close(ours[name], theirs[name], rtol=1e-5, atol=1e-6, msg=name)


def test_killed_sweep_runs_every_point_once_to_completion(tmp_path):
    grid = {"learning_rate": {"values": [1e-3, 3e-3]}, "weight_decay": {"values": [0, 0.1]},
            "num_epochs": {"value": 2}}  # fmt: skip
    path = sweep_file(tmp_path, "kills", method="grid", parameters=grid)
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    command = [PYTHON, "-m", "recipes", "sweep", str(path), "--workers", "2", "--storage", url,
               "--output_dir", str(tmp_path / "out")]  # fmt: skip
    outcome = run_with_kills(command, CI_KILLS, seed=1, window=(8.0, 16.0), cwd=tmp_path)
    assert outcome.returncode == 0, outcome.stderr[-2000:]
    trials = optuna.load_study(study_name="kills", storage=url).get_trials(deepcopy=False)
    complete = [tuple(t.params.values()) for t in trials if t.state == TrialState.COMPLETE]
    assert sorted(complete) == [(1e-3, 0), (1e-3, 0.1), (3e-3, 0), (3e-3, 0.1)]
    assert (tmp_path / "out" / "summary.json").is_file()


def test_ctrl_c_saves_a_checkpoint_and_says_how_to_resume(tmp_path):
    run = tmp_path / "run"
    args = [*STEPS, "--num_epochs", "6", "--output_dir", str(run)]
    command = [PYTHON, "-m", "recipes", "train", *args]
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE, "text": True}
    terminal = {"preexec_fn": lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)}
    proc = subprocess.Popen(command, cwd=ROOT, **quiet, **terminal)  # as from a terminal, even
    # when the tests run as a background job (which starts with Ctrl-C ignored)
    deadline = time.time() + 120
    while not (run / "steps.jsonl").is_file() and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    (line,) = [ln for ln in err.splitlines() if ln.startswith("interrupted: ")]
    assert "checkpoint saved at step" in line and "again to resume" in line
    step = int(line.split("at step ")[1].split()[0])
    assert (run / "checkpoints" / f"step_{step}" / "trainer_state.json").is_file()
    again = run_cli("train", *args, timeout=300)
    assert f"resumed at step {step}" in again.stdout + again.stderr


def test_state_files_are_replaced_whole_and_torn_lines_skipped(tmp_path):
    state = tmp_path / "results.json"
    write_atomic(state, '{"a": 1}')
    write_atomic(state, '{"a": 2}')
    assert state.read_text() == '{"a": 2}' and list(tmp_path.iterdir()) == [state]
    history = tmp_path / "epochs.jsonl"
    append_line(history, '{"epoch": 1}')
    with history.open("a") as handle:
        handle.write('{"epoch": 2, "val_acc')  # a kill in the middle of an append
    assert read_json_lines(history) == [{"epoch": 1}]


class Payload:
    """Unpickling this runs code: it writes a marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_malicious_pth_is_never_unpickled(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    torch.save({"state_dict": Payload(marker)}, evil)
    done = run_cli("train", *FAST, "--checkpoint", str(evil), "--output_dir", str(tmp_path / "r"))
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "evil.pth" in done.stderr and not marker.exists()


def test_a_second_writer_of_a_live_folder_is_refused(tmp_path):
    run = tmp_path / "run"
    args = [*STEPS, "--num_epochs", "6", "--output_dir", str(run)]
    first = subprocess.Popen([PYTHON, "-m", "recipes", "train", *args], cwd=ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.time() + 120
        while not (run / "steps.jsonl").is_file() and time.time() < deadline:
            time.sleep(0.2)
        second = run_cli("train", *args)
    finally:
        first.kill()
        first.wait()
    (line,) = second.stderr.strip().splitlines()
    assert second.returncode == 2 and f"process {first.pid}" in line and "--output_dir" in line

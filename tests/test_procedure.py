"""`recipes tune`: the seven steps end to end, a report, resumption and its bad input."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from recipes.cli import main
from recipes.core import runs
from recipes.search.spec import load_sweep
from recipes.search.trial import as_best
from recipes.tuning.budget import FINAL
from recipes.tuning.champion import champion
from recipes.tuning.procedure import chosen_stage
from tests.conftest import PYTHON, ROOT, run_cli
from tests.kill_harness import run_with_kills
from tests.test_clock import counted

TIMES: dict[str, float] = {}

RECIPE = """\
model_name: test_convnext
max_train_samples: 256
per_device_train_batch_size: 32
learning_rate: 3.0e-3
warmup_epochs: 1.0
report_to: none
"""


@pytest.fixture(scope="module")
def tuned(tmp_path_factory) -> tuple[Path, Path, str]:
    root = tmp_path_factory.mktemp("tune")
    recipe = root / "recipe.yaml"
    recipe.write_text(RECIPE)
    folder = root / "out"
    began = time.perf_counter()
    proc = run_cli("tune", str(recipe), "--budget", "3", "--output_dir", str(folder), timeout=900)
    TIMES["tune"] = time.perf_counter() - began
    assert proc.returncode == 0, proc.stderr[-3000:]
    return recipe, folder, proc.stdout


def test_tune_runs_every_step_and_writes_a_report(tuned) -> None:
    _, folder, stdout = tuned
    assert "test accuracy" in stdout
    checks = json.loads((folder / "checks" / "checks.json").read_text())
    assert [c["name"] for c in checks["checks"]] == ["initial_loss", "overfit", "lr_range"]
    coarse = json.loads((folder / "coarse" / "summary.json").read_text())
    refine = json.loads((folder / "coarse" / "refine" / "summary.json").read_text())
    assert len(coarse["trials"]) == 2 and len(refine["trials"]) == 1
    assert refine["trials"][0]["epochs"] == 3
    assert (folder / "final" / "model" / "model.safetensors").is_file()
    final = json.loads((folder / "final" / "results.json").read_text())
    assert final["epochs"] == 6
    report = (folder / "report.md").read_text()
    for heading in ("Steps 1-3", "Step 4: coarse search", "Step 5: refine 1", "Step 7", "Final"):
        assert f"## {heading}" in report
    page = (folder / "report.html").read_text()
    assert page.count("data:image/png;base64,") >= 5
    timings = json.loads((folder / "timings.json").read_text())
    assert {"1-3 checks", "4 coarse search", "final model and test"} <= set(timings)


def test_search_trials_warm_up_briefly_and_the_final_model_as_the_recipe_says(tuned) -> None:
    """A one-epoch trial cannot hold the recipe's one-epoch warmup; the final model keeps it."""
    _, folder, _ = tuned
    trial = json.loads((folder / "coarse" / "summary.json").read_text())["trials"][0]
    assert trial["state"] == "complete"
    config = folder / "coarse" / "trials" / "trial_000" / "config.yaml"
    assert yaml.safe_load(config.read_text())["warmup_epochs"] == 0.25
    assert yaml.safe_load((folder / "final" / "config.yaml").read_text())["warmup_epochs"] == 1.0


def test_the_recipe_starts_the_search_and_the_coarse_choice_starts_the_refine_stage(tuned):
    """Coarse trial 0 trains the recipe's own values (where the ranges hold them); refine trial
    0 trains the coarse stage's choice again for longer, beside the new points around it."""
    _, folder, _ = tuned
    ranges = yaml.safe_load((folder / "coarse.yaml").read_text())["parameters"]
    recipe = {"learning_rate": 3.0e-3, "weight_decay": 0.05}  # RECIPE's LR; the default decay
    held = {k: v for k, v in recipe.items() if ranges[k]["min"] <= v <= ranges[k]["max"]}
    coarse = json.loads((folder / "coarse" / "summary.json").read_text())
    first = next(t for t in coarse["trials"] if t["trial"] == 0)
    assert held and {k: first[k] for k in held} == held
    study = optuna.load_study(
        study_name="coarse", storage=f"sqlite:///{folder / 'coarse' / 'optuna.db'}"
    )
    choice, _ = champion(study, held)
    refine = json.loads((folder / "coarse" / "refine" / "summary.json").read_text())
    promoted = next(t for t in refine["trials"] if t["trial"] == 0)
    assert {k: promoted[k] for k in recipe} == choice["values"]
    assert "coarse: trial" in (folder / "report.md").read_text()  # the choice, and why


def test_a_finished_tune_keeps_the_trials_records_but_not_their_weights(tuned) -> None:
    _, folder, _ = tuned
    trials = sorted((folder / "coarse").rglob("trial_*"))
    assert len(trials) == 3 and all((t / "results.json").is_file() for t in trials)
    assert not any((t / name).exists() for t in trials for name in ("checkpoints", "model"))
    assert (folder / "final" / "model").is_dir() and (folder / "final" / "checkpoints").is_dir()


def test_tune_started_again_reuses_what_is_done(tuned) -> None:
    recipe, folder, _ = tuned
    before = (folder / "final" / "model" / "model.safetensors").stat().st_mtime_ns
    trials = sorted(p.name for p in (folder / "coarse" / "trials").iterdir())
    proc = run_cli("tune", str(recipe), "--budget", "3", "--output_dir", str(folder), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in (folder / "coarse" / "trials").iterdir()) == trials
    assert "0 to run" in proc.stdout
    assert json.loads((folder / "final" / "results.json").read_text())["epochs"] == 6
    assert (folder / "final" / "model" / "model.safetensors").stat().st_mtime_ns >= before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.yaml"], "recipe file not found: missing.yaml"),
        (["--budget", "10s"], "--budget 10s is too small: the checks, a timed run"),
        (["--budget", "2"], "--budget 2 is too small: the procedure needs at least 3 trials"),
        (["--budget", "soon"], "--budget 'soon': use hours (1h), minutes (5m)"),
        (["--budget", "3.5"], "--budget 3.5: trials are counted whole; use --budget 3 for"),
    ],
)
def test_bad_input_is_one_line(tmp_path: Path, capsys, args: list[str], message: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["tune", *args, "--output_dir", str(tmp_path / "t")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_a_folder_of_another_recipe_is_refused(tuned, tmp_path: Path, capsys) -> None:
    _, folder, _ = tuned
    other = tmp_path / "other.yaml"
    other.write_text(RECIPE.replace("3.0e-3", "1.0e-3"))
    with pytest.raises(SystemExit) as exit_info:
        main(["tune", str(other), "--budget", "3", "--output_dir", str(folder)])
    assert exit_info.value.code == 2
    assert "was made by a different recipe or budget (recipe" in capsys.readouterr().err


def test_killed_tune_ends_with_a_report_and_reruns_no_finished_trial(tuned, tmp_path):
    """SIGKILL `recipes tune` twice at random moments of a whole run, restart it each time."""
    recipe, _, _ = tuned
    folder = tmp_path / "killed"
    command = [PYTHON, "-m", "recipes", "tune", str(recipe), "--budget", "3", "--output_dir",
               str(folder)]  # fmt: skip
    whole = TIMES["tune"]
    outcome = run_with_kills(command, 2, 3, (0.2 * whole, 0.9 * whole), cwd=ROOT)
    assert outcome.returncode == 0 and outcome.kills >= 1, outcome.stderr[-2000:]
    assert (folder / "report.md").is_file()
    for db in folder.rglob("optuna.db"):
        url = f"sqlite:///{db}"
        for summary in optuna.get_all_study_summaries(url):
            trials = optuna.load_study(study_name=summary.study_name, storage=url).trials
            done = [t.user_attrs["run_dir"] for t in trials if t.state == TrialState.COMPLETE]
            assert len(done) == len(set(done)), f"a finished trial ran again in {db}"


def killed_in_final(command: list[str], folder: Path) -> float:
    """Start the tune and SIGKILL it once its final model has a checkpoint and some of the
    final's time is counted; returns that time."""
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    try:
        deadline = time.time() + 600
        while time.time() < deadline and proc.poll() is None:
            spent = counted(folder, FINAL)
            if spent and runs.checkpoint_dirs(folder / "final"):
                return spent
            time.sleep(0.2)
        raise AssertionError("the tune ended or ran out of time before its final's checkpoint")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_a_tune_killed_in_its_final_model_resumes_it_and_counts_the_lost_time(tuned, tmp_path):
    """Under a wall-clock budget the restart trains the final model the first start began (its
    size kept in budget_left.json, not recomputed from the smaller time left), from its
    checkpoint, and the killed start's time counts against the budget."""
    recipe, _, _ = tuned
    folder = tmp_path / "wall"
    args = ["tune", str(recipe), "--budget", "60s", "--output_dir", str(folder)]
    lost = killed_in_final([PYTHON, "-m", "recipes", *args], folder)
    restart = run_cli(*args, timeout=600)
    assert restart.returncode == 0, restart.stderr[-2000:]
    assert f"run {folder / 'final'}:" in restart.stdout and "resumed at step" in restart.stdout
    assert json.loads((folder / "timings.json").read_text())[FINAL] > lost
    assert FINAL in json.loads((folder / "budget_left.json").read_text())


def test_a_stage_warns_of_the_edge_its_chosen_values_lie_on_not_its_best_trials(tmp_path):
    """Trial 0, the incumbent, mid-range; trial 1 ahead of it (within the noise, so the
    incumbent is kept) at the upper edge of the LR range: the warning follows the choice."""
    spec = load_sweep(ROOT / "recipes" / "configs" / "sweeps" / "random.yaml")
    study = optuna.create_study(direction="maximize")
    for number, (lr, accuracy) in enumerate([(3e-3, 0.90), (0.09, 0.91)]):
        values = {"learning_rate": lr, "weight_decay": 1e-3, "label_smoothing": 0.0}
        attrs = {"values": values, "run_dir": str(tmp_path / f"trial_{number}"), "args": []}
        study.add_trial(optuna.trial.create_trial(value=accuracy, user_attrs=attrs))
    incumbent, challenger = (as_best(t) for t in study.trials)
    assert chosen_stage("coarse", spec, study, tmp_path, incumbent).summary["warnings"] == []
    (warning,) = chosen_stage("coarse", spec, study, tmp_path, challenger).summary["warnings"]
    assert warning.startswith("chosen learning_rate=0.09 lies at the upper edge")

"""Sweeps: W&B sweep files on the local Optuna engine, restarts, workers, refine, wandb agents."""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import time
from collections import Counter
from functools import partial
from pathlib import Path

import optuna
import pytest
import sqlalchemy
import yaml
from optuna.trial import TrialState

from recipes.cli import main
from recipes.core.errors import RecipeError
from recipes.search.hyperband import WandbHyperbandPruner
from recipes.search.params import read_parameters
from recipes.search.report import edge_warnings
from recipes.search.samplers import make_pruner
from recipes.search.spec import build_spec, load_sweep
from recipes.search.trial import run_trial, suggest
from tests.conftest import PYTHON, ROOT, run_cli

SWEEPS = ROOT / "recipes" / "configs" / "sweeps"
TINY = {
    "model_name": {"value": "test_convnext"},
    "num_epochs": {"value": 1},
    "max_train_samples": {"value": 128},
    "per_device_eval_batch_size": {"value": 512},
    "report_to": {"value": "none"},
}
COMMAND = ["${env}", "${interpreter}", "-m", "recipes", "train", "${args}"]


def sweep_file(folder: Path, name: str, **raw) -> Path:
    raw.setdefault("metric", {"name": "val_accuracy", "goal": "maximize"})
    raw["parameters"] = {**TINY, **raw["parameters"]}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, "command": COMMAND, **raw}, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def coarse_to_fine(tmp_path_factory) -> Path:
    """A 3x2 grid where missing weights crash 3 trials, then a refine stage (one 2-epoch trial)."""
    folder = tmp_path_factory.mktemp("sweep")
    parameters = {
        "learning_rate": {"values": [1e-3, 1e-2, 1e-1]},
        "checkpoint": {"values": [None, "missing.safetensors"]},
    }
    refine = {"top_k": 2, "num_epochs": 2, "run_cap": 1}
    path = sweep_file(folder, "coarse", method="grid", parameters=parameters, refine=refine)
    main(["sweep", str(path), "--output_dir", str(folder / "out")])
    return folder


def test_grid_runs_every_combination_once_and_survives_a_crash(coarse_to_fine):
    out = coarse_to_fine / "out"
    summary = json.loads((out / "summary.json").read_text())
    seen = Counter((r["learning_rate"], r["checkpoint"]) for r in summary["trials"])
    assert len(seen) == 6 and set(seen.values()) == {1}
    states = Counter((r["checkpoint"], r["state"]) for r in summary["trials"])
    assert states == {(None, "complete"): 3, ("missing.safetensors", "fail"): 3}
    errors = [r["error"] for r in summary["trials"] if r["state"] == "fail"]
    assert all(e.startswith("RecipeError: checkpoint not found") for e in errors)
    best = summary["best"]
    assert best["values"]["checkpoint"] is None
    assert (
        yaml.safe_load(Path(best["run_dir"], "config.yaml").read_text())["learning_rate"]
        == (best["values"]["learning_rate"])
    )
    for name in ("trials.csv", "metric_vs_params.png", "history.png", "sweep.yaml", "optuna.db"):
        assert (out / name).is_file(), name


def test_refine_stage_narrows_around_the_top_trials_and_trains_longer(coarse_to_fine):
    out = coarse_to_fine / "out"
    coarse = json.loads((out / "summary.json").read_text())
    top = sorted(
        (r for r in coarse["trials"] if r["state"] == "complete"), key=lambda r: -r["val_accuracy"]
    )[:2]
    refined = yaml.safe_load((out / "refine.yaml").read_text())
    lr = refined["parameters"]["learning_rate"]
    assert lr["distribution"] == "log_uniform_values"
    lrs = [r["learning_rate"] for r in top]
    assert 1e-4 <= lr["min"] <= min(lrs) <= max(lrs) <= lr["max"] <= 1.0  # a decade past the grid
    assert lr["max"] / lr["min"] < 1e-1 / 1e-3 or lrs[0] in (1e-3, 1e-1)  # narrower, or an edge
    assert refined["parameters"]["checkpoint"] == {"value": None}
    assert refined["parameters"]["num_epochs"] == {"value": 2}
    assert "refine" not in refined and refined["command"] == COMMAND
    load_sweep(out / "refine.yaml")  # a valid sweep file, for W&B too
    fine = json.loads((out / "refine" / "summary.json").read_text())
    assert [r["epochs"] for r in fine["trials"]] == [2]


def test_a_different_file_in_the_same_folder_is_refused(coarse_to_fine, tmp_path, capsys):
    parameters = {"learning_rate": {"values": [1e-3, 1e-2]}}
    changed = sweep_file(tmp_path, "coarse", method="grid", parameters=parameters)
    with pytest.raises(SystemExit) as exit_info:
        main(["sweep", str(changed), "--output_dir", str(coarse_to_fine / "out")])
    (line,) = capsys.readouterr().err.splitlines()
    assert exit_info.value.code == 2 and "different sweep file" in line and "--overwrite" in line


def trial_states(url: str, name: str) -> list:
    try:
        return optuna.load_study(study_name=name, storage=url).get_trials(deepcopy=False)
    except KeyError:
        return []


def stopped_in_a_later_trial(proc: subprocess.Popen, url: str, name: str) -> list:
    """Freeze the sweep (SIGSTOP) while a trial after the first runs, and return its trials as
    they stand; a sweep caught between trials, or in a write to the storage, runs on until the
    next poll."""
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        os.killpg(proc.pid, signal.SIGSTOP)
        try:
            trials = trial_states(url, name)
        except (sqlalchemy.exc.OperationalError, optuna.exceptions.StorageInternalError):
            # frozen while it holds the database's write lock
            trials = []
        running = [t for t in trials if t.state == TrialState.RUNNING and "pid" in t.user_attrs]
        if any(t.number for t in running):
            return trials
        os.killpg(proc.pid, signal.SIGCONT)
        time.sleep(0.2)
    raise AssertionError(f"sweep {name} ended or ran out of time before a poll found a later trial")


def test_killed_sweep_restarts_with_what_is_left_on_two_workers(tmp_path):
    """Kill a sweep in a later trial; the restart keeps the finished ones and retries it."""
    parameters = {"learning_rate": {"values": [1e-3, 3e-3]}, "weight_decay": {"values": [0, 0.1]}}
    path = sweep_file(tmp_path, "killed", method="grid", parameters=parameters)
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    args = ["sweep", str(path), "--output_dir", str(tmp_path / "out"), "--storage", url]
    proc = subprocess.Popen(
        [PYTHON, "-m", "recipes", *args],
        cwd=tmp_path,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        before = stopped_in_a_later_trial(proc, url, "killed")
    finally:
        with contextlib.suppress(ProcessLookupError):  # a sweep that ended on its own
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    (killed,) = [t for t in before if t.state == TrialState.RUNNING]
    done = {t.number: t.datetime_complete for t in before if t.state == TrialState.COMPLETE}
    assert sorted(done) == list(range(killed.number))
    restart = run_cli(*args, "--workers", "2", cwd=tmp_path)
    assert restart.returncode == 0, restart.stderr[-2000:]
    trials = trial_states(url, "killed")
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert sorted(tuple(t.params.values()) for t in complete) == [
        (1e-3, 0),
        (1e-3, 0.1),
        (3e-3, 0),
        (3e-3, 0.1),
    ]
    assert {t.number: t.datetime_complete for t in complete if t.number in done} == done
    retry = next(t for t in trials if t.system_attrs.get("retry_history") == [killed.number])
    assert retry.state == TrialState.COMPLETE
    assert retry.user_attrs["run_dir"].endswith(f"trial_{killed.number:03d}")
    assert "2 worker(s)" in restart.stdout
    # The two workers share the trials left, each with half the threads; the spawned one
    # starts seconds after the first and may find none left.
    rerun = [t for t in complete if t.number not in done]
    workers = {t.user_attrs["pid"] for t in rerun}
    assert 1 <= len(workers) <= 2 and {t.user_attrs["threads"] for t in rerun} == {
        max(1, killed.user_attrs["threads"] // 2)
    }


def test_hook_prunes_after_the_epoch_the_pruner_rejects(tmp_path):
    """Optuna's deterministic ThresholdPruner stops a 3-epoch trial after epoch 1."""
    parameters = {"learning_rate": {"values": [1e-2]}, "num_epochs": {"value": 3}}
    spec = load_sweep(sweep_file(tmp_path, "pruned", method="grid", parameters=parameters))
    study = optuna.create_study(
        direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=1.1)
    )
    study.optimize(partial(run_trial, spec, tmp_path), n_trials=1)
    trial = study.trials[0]
    assert trial.state == TrialState.PRUNED and list(trial.intermediate_values) == [1]
    epochs = (tmp_path / "trials" / "trial_000" / "epochs.jsonl").read_text().splitlines()
    assert (
        len(epochs) == 1 and trial.intermediate_values[1] == json.loads(epochs[0])["val_accuracy"]
    )


def test_a_trial_stopped_after_its_last_epoch_is_complete(tmp_path):
    """A stop decided at the last epoch cuts nothing short: the trial finished, as on W&B."""
    parameters = {"learning_rate": {"values": [1e-2]}}
    spec = load_sweep(sweep_file(tmp_path, "last", method="grid", parameters=parameters))
    study = optuna.create_study(
        direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=1.1)
    )
    study.optimize(partial(run_trial, spec, tmp_path), n_trials=1)
    trial = study.trials[0]
    assert trial.state == TrialState.COMPLETE and trial.value == trial.intermediate_values[1]


def test_hyperband_maps_to_wandbs_rule_and_optunas_only_under_its_own_key():
    pruner = make_pruner(load_sweep(SWEEPS / "hyperband.yaml"))
    assert isinstance(pruner, WandbHyperbandPruner)
    assert pruner.rule.bands[:3] == (1, 3, 9) and pruner.rule.eta == 3 and pruner.rule.strict
    raw = {k: v for k, v in load_sweep(SWEEPS / "hyperband.yaml").raw.items()}
    spec = build_spec(
        {**raw, "early_terminate": {"type": "hyperband", "max_iter": 27, "s": 2}}, "h"
    )
    assert spec.hyperband.bands == (3, 9)
    del raw["early_terminate"]
    own = make_pruner(build_spec({**raw, "optuna_hyperband": {"min_resource": 1}}, "o"))
    assert isinstance(own, optuna.pruners.HyperbandPruner)
    assert (own._min_resource, own._max_resource, own._reduction_factor) == (1, 9, 3)
    by_steps = {**raw["parameters"], "max_steps": {"value": 20}}
    own = make_pruner(build_spec({**raw, "parameters": by_steps, "optuna_hyperband": {}}, "s"))
    assert own._max_resource == "auto"  # epochs come from max_steps: the first finished trial's


DISTRIBUTIONS = {
    "a": {"distribution": "log_uniform", "min": math.log(1e-3), "max": math.log(1e-1)},
    "b": {"distribution": "q_log_uniform_values", "min": 8, "max": 256, "q": 8},
    "c": {"distribution": "inv_log_uniform_values", "min": 0.01, "max": 1.0},
    "d": {"distribution": "q_uniform", "min": 0, "max": 1, "q": 0.25},
    "e": {"distribution": "normal", "mu": 5.0, "sigma": 0.5},
    "f": {"distribution": "log_normal", "mu": 0.0, "sigma": 0.3},
    "g": {"values": ["x", "y"], "probabilities": [0.9, 0.1]},
    "h": {"min": 2, "max": 4},
    "i": {"distribution": "inv_log_uniform", "min": 0.0, "max": 2.0},
}


def test_each_wandb_distribution_samples_its_range():
    """Sampling through Optuna reproduces W&B's formulas (ranges, quanta, moments, weights)."""
    params, _ = read_parameters({"scheduler_kwargs": {"parameters": DISTRIBUTIONS}}, "random")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    draws = []
    for _ in range(400):
        trial = study.ask()
        draws.append({p.name.split(".")[1]: suggest(trial, p) for p in params})
        study.tell(trial, 0.0)
    column = {k: [d[k] for d in draws] for k in DISTRIBUTIONS}
    assert min(column["a"]) >= 1e-3 and max(column["a"]) <= 1e-1
    assert all(v % 8 == 0 and isinstance(v, int) and 8 <= v <= 256 for v in column["b"])
    assert min(column["c"]) >= 0.01 and max(column["c"]) <= 1.0
    assert set(column["d"]) <= {0.0, 0.25, 0.5, 0.75, 1.0}
    assert abs(sum(column["e"]) / 400 - 5.0) < 0.1
    assert min(column["f"]) > 0
    assert 0.8 < column["g"].count("x") / 400 < 0.97
    assert set(column["h"]) == {2, 3, 4}
    assert math.exp(-2.0) <= min(column["i"]) and max(column["i"]) <= 1.0


BAD = [
    ({"method": "anneal"}, "method: unknown 'anneal'"),
    (
        {"parameters": {"learning_rate": {"distribution": "log_unifrom", "min": 1, "max": 2}}},
        "parameters.learning_rate.distribution: unknown 'log_unifrom'; did you mean log_uniform",
    ),
    (
        {"method": "grid", "parameters": {"learning_rate": {"min": 0.1, "max": 0.2}}},
        "parameters.learning_rate: grid search cannot walk the continuous uniform",
    ),
    (
        {"parameters": {"learning_rate": {"min": 0.2, "max": 0.1}}},
        "parameters.learning_rate: min 0.2 is not less than max 0.1",
    ),
    (
        {"parameters": {"learnig_rate": {"values": [0.1]}}},
        "parameters: unknown argument 'learnig_rate'; did you mean learning_rate",
    ),
    ({"metric": {"name": "accuracy", "goal": "maximize"}}, "metric.name: training never reports"),
    (
        {"parameters": {"num_epochs": {"values": [1, "many"]}}},
        "parameters.num_epochs: value 'many'",
    ),
    ({"early_terminate": {"type": "hyperband"}}, "early_terminate: hyperband needs min_iter"),
]


@pytest.mark.parametrize(("change", "message"), BAD)
def test_bad_sweep_files_name_the_key(tmp_path, change, message):
    raw = {"method": "random", "run_cap": 2, "parameters": {"learning_rate": {"values": [0.1]}}}
    path = sweep_file(tmp_path, "bad", **{**raw, **change})
    with pytest.raises(RecipeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_sweep(path)


def test_dry_run_prints_every_grid_combination(capsys):
    main(["sweep", str(SWEEPS / "grid.yaml"), "--dry-run"])
    out = capsys.readouterr().out
    assert "grid: 6 combinations" in out and "6. learning_rate=0.03 weight_decay=0.05" in out
    for name in ("random", "bayes", "hyperband"):
        main(["sweep", str(SWEEPS / f"{name}.yaml"), "--dry-run"])
        assert "search space:" in capsys.readouterr().out


def test_edge_of_range_is_warned():
    spec = load_sweep(SWEEPS / "random.yaml")
    best = {"learning_rate": 0.09, "weight_decay": 1e-3, "label_smoothing": 0.0}
    (warning,) = edge_warnings(spec, best)
    assert warning.startswith("best learning_rate=0.09 lies at the upper edge")

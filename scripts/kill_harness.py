"""SIGKILL `recipes train`, `recipes sweep --workers 2` and `recipes tune` at random moments,
restart each every time, and check what the restarts end with.

train: the final weights against an uninterrupted run (no augmentation, save_steps 1); sweep:
every grid point completed exactly once; tune: a report, and no finished trial run again. Each
is first run once uninterrupted to time it; kills land at 25-60% of that wall time (some in
start-up, most in the work), so every restart makes some progress before the next kill.

    python scripts/kill_harness.py --kills 10
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import optuna
import yaml
from optuna.trial import TrialState
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.kill_harness import run_with_kills  # noqa: E402

RECIPES = [sys.executable, "-m", "recipes"]
WINDOW = (0.25, 0.6)  # kills land in this part of an uninterrupted run's wall time
TRAIN = ["--report_to", "none", "--model_name", "test_convnext", "--num_epochs", "3",
         "--max_train_samples", "512", "--per_device_train_batch_size", "16", "--augment",
         "false", "--save_steps", "1", "--save_total_limit", "1"]  # fmt: skip


TUNE_RECIPE = {"model_name": "test_convnext", "max_train_samples": 256,
               "per_device_train_batch_size": 32, "report_to": "none"}  # fmt: skip


def timed_window(command: list[str], **popen) -> tuple[float, float]:
    """Run once uninterrupted; the kill window in seconds, from its wall time."""
    began = time.perf_counter()
    assert run_with_kills(command, 0, 0, (0, 0), **popen).returncode == 0
    whole = time.perf_counter() - began
    return WINDOW[0] * whole, WINDOW[1] * whole


def check_train(tmp: Path, kills: int) -> str:
    window = timed_window([*RECIPES, "train", *TRAIN, "--output_dir", str(tmp / "ref")])
    out = run_with_kills([*RECIPES, "train", *TRAIN, "--output_dir", str(tmp / "k")], kills, 0,
                         window)  # fmt: skip
    ref, ours = (load_file(str(tmp / d / "model" / "model.safetensors")) for d in ("ref", "k"))
    worst = max((ref[k] - ours[k]).abs().max().item() for k in ref)
    outcome = f"{out.kills} kills survived, exit {out.returncode}"
    return f"train: {outcome}, max weight difference {worst:.2e}"


def check_sweep(tmp: Path, kills: int) -> str:
    fixed = {"model_name": "test_convnext", "num_epochs": 2, "max_train_samples": 256,
             "report_to": "none"}  # fmt: skip
    space = {"learning_rate": {"values": [1e-3, 3e-3, 1e-2]}, "weight_decay": {"values": [0, 0.1]}}
    space |= {key: {"value": value} for key, value in fixed.items()}
    metric = {"name": "val_accuracy", "goal": "maximize"}
    raw = {"name": "kills", "method": "grid", "metric": metric, "parameters": space}
    path = tmp / "kills.yaml"
    path.write_text(yaml.safe_dump(raw))
    reference = ["--output_dir", str(tmp / "ref-sweep"), "--storage", f"sqlite:///{tmp / 'r.db'}"]
    window = timed_window([*RECIPES, "sweep", str(path), "--workers", "2", *reference])
    url = f"sqlite:///{tmp / 'kills.db'}"
    out = run_with_kills([*RECIPES, "sweep", str(path), "--workers", "2", "--storage", url,
                          "--output_dir", str(tmp / "sweep")], kills, 1, window)  # fmt: skip
    trials = optuna.load_study(study_name="kills", storage=url).get_trials(deepcopy=False)
    done = Counter(tuple(t.params.values()) for t in trials if t.state == TrialState.COMPLETE)
    once = len(done) == 6 and set(done.values()) == {1}
    return f"sweep: {out.kills} kills survived, exit {out.returncode}, 6 points once each: {once}"


def check_tune(tmp: Path, kills: int) -> str:
    recipe = tmp / "tune.yaml"
    recipe.write_text(yaml.safe_dump(TUNE_RECIPE))
    tune = [*RECIPES, "tune", str(recipe), "--budget", "4", "--output_dir"]
    window = timed_window([*tune, str(tmp / "ref-tune")], cwd=tmp)
    folder = tmp / "tune"
    out = run_with_kills([*tune, str(folder)], kills, 2, window, cwd=tmp)
    reruns = 0
    for db in folder.rglob("optuna.db"):
        for study in optuna.get_all_study_summaries(f"sqlite:///{db}"):
            trials = optuna.load_study(
                study_name=study.study_name, storage=f"sqlite:///{db}"
            ).trials
            runs = Counter(
                t.user_attrs.get("run_dir") for t in trials if t.state == TrialState.COMPLETE
            )
            reruns += sum(n - 1 for n in runs.values())
    report = (folder / "report.md").is_file()
    outcome = f"{out.kills} kills survived, exit {out.returncode}"
    return f"tune: {outcome}, report {report}, finished trials re-run {reruns}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--only", choices=["train", "sweep", "tune"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for name, check in (("train", check_train), ("sweep", check_sweep), ("tune", check_tune)):
            if args.only in (None, name):
                print(check(Path(tmp), args.kills), flush=True)


if __name__ == "__main__":
    main()

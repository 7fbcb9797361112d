"""SIGKILL `recipes train`, `recipes sweep --workers 2` and `recipes tune` at random moments,
restart each every time, and check what the restarts end with.

train: the final weights against an uninterrupted run (no augmentation, save_steps 1); sweep:
every grid point completed exactly once; tune: a report, and no finished trial run again.

    python scripts/kill_harness.py --kills 10
"""

from __future__ import annotations

import argparse
import sys
import tempfile
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
TRAIN = ["--report_to", "none", "--model_name", "test_convnext", "--num_epochs", "3",
         "--max_train_samples", "512", "--per_device_train_batch_size", "16", "--augment",
         "false", "--save_steps", "1", "--save_total_limit", "1"]  # fmt: skip


def check_train(tmp: Path, kills: int) -> str:
    run_with_kills([*RECIPES, "train", *TRAIN, "--output_dir", str(tmp / "ref")], 0, 0, (0, 0))
    out = run_with_kills([*RECIPES, "train", *TRAIN, "--output_dir", str(tmp / "k")], kills, 0,
                         (5.0, 20.0))  # fmt: skip
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
    url = f"sqlite:///{tmp / 'kills.db'}"
    out = run_with_kills([*RECIPES, "sweep", str(path), "--workers", "2", "--storage", url,
                          "--output_dir", str(tmp / "sweep")], kills, 1, (6.0, 25.0))  # fmt: skip
    trials = optuna.load_study(study_name="kills", storage=url).get_trials(deepcopy=False)
    done = Counter(tuple(t.params.values()) for t in trials if t.state == TrialState.COMPLETE)
    once = len(done) == 6 and set(done.values()) == {1}
    return f"sweep: {out.kills} kills survived, exit {out.returncode}, 6 points once each: {once}"


def check_tune(tmp: Path, kills: int) -> str:
    folder = tmp / "tune"
    out = run_with_kills([*RECIPES, "tune", "--budget", "8", "--output_dir", str(folder)], kills, 2,
                         (10.0, 60.0), cwd=tmp)  # fmt: skip
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

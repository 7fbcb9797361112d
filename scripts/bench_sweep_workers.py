"""Trials per hour of one random sweep: SQLite with 1 and 2 workers, and with --storage URL
1, 2 and 3 independent `recipes sweep` processes (machines) sharing a database.

Every process pays a one-off start (about 6 s of imports) that a long sweep repays. Processes
standing for machines share this machine's cores here (each gets cores / N threads, as
--workers gives them), so the median time of one trial is printed too.

    python scripts/bench_sweep_workers.py --storage postgresql://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import yaml
from machine import cpu_name

SWEEPS = ("sqlite1", "sqlite2", "db1", "db2", "db3")


def sweep_file(folder: Path, name: str, trials: int, epochs: int, samples: int, model: str) -> Path:
    raw = {
        "name": name,
        "method": "random",
        "metric": {"name": "val_accuracy", "goal": "maximize"},
        "run_cap": trials,
        "parameters": {
            "learning_rate": {"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-1},
            "model_name": {"value": model},
            "num_epochs": {"value": epochs},
            "max_train_samples": {"value": samples},
            "report_to": {"value": "none"},
        },
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def measure(label: str, path: Path, url: str, processes: int, workers: int, folder: Path) -> float:
    """Wall time from starting the processes to the last one's exit; trials per hour."""
    command = [sys.executable, "-m", "recipes", "sweep", str(path), "--storage", url]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    env["OMP_NUM_THREADS"] = str(max(1, os.cpu_count() // processes))  # as --workers shares them
    start = time.perf_counter()
    procs = []
    for i in range(processes):
        own = ["--workers", str(workers), "--output_dir", str(folder / f"{label}-{i}")]
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.PIPE}
        procs.append(subprocess.Popen([*command, *own, "--seed", str(i)], env=env, **quiet))
    for proc in procs:
        if proc.wait():
            sys.exit(f"{label} failed:\n{proc.stderr.read().decode()[-2000:]}")
    seconds = time.perf_counter() - start
    trials = optuna.load_study(study_name=path.stem, storage=url).get_trials(deepcopy=False)
    done = [t for t in trials if t.state.name == "COMPLETE"]
    each = statistics.median((t.datetime_complete - t.datetime_start).total_seconds() for t in done)
    rate = 3600 * len(done) / seconds
    print(f"{label:>28}: {len(done)} trials in {seconds:.0f} s = {rate:.0f} trials/hour, "
          f"median trial {each:.1f} s", flush=True)  # fmt: skip
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", help="a shared database URL (PostgreSQL)")
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--samples", type=int, default=1024, help="max_train_samples")
    parser.add_argument("--model", default="test_convnext")
    args = parser.parse_args()
    print(f"CPU: {cpu_name()}")
    with tempfile.TemporaryDirectory() as tmp:
        folder, tag = Path(tmp), f"{os.getpid()}"
        spec = (args.trials, args.epochs, args.samples, args.model)
        files = {name: sweep_file(folder, f"{name}-{tag}", *spec) for name in SWEEPS}
        sqlite = f"sqlite:///{folder / 'optuna.db'}"
        base = measure("SQLite, 1 process", files["sqlite1"], sqlite, 1, 1, folder)
        two = measure("SQLite, --workers 2", files["sqlite2"], sqlite, 1, 2, folder)
        print(f"--workers 2 / 1 on SQLite: {two / base:.2f}x trials per hour")
        for n in (1, 2, 3) if args.storage else ():
            rate = measure(
                f"{n} process(es) on --storage", files[f"db{n}"], args.storage, n, 1, folder
            )
            print(f"  against SQLite with 1: {rate / base:.2f}x trials per hour")


if __name__ == "__main__":
    main()

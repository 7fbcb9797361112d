"""`recipes sweep --workers 2` against 1 worker on the same random sweep: trials per hour.

The extra worker process pays a one-off start (about 6 s of imports) that a long sweep repays.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("WANDB_MODE", "offline")

from recipes.search.engine import SweepOptions, run_stage  # noqa: E402
from recipes.search.spec import build_spec  # noqa: E402


def sweep(trials: int, epochs: int, samples: int, model: str) -> dict:
    return {
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


def trials_per_hour(raw: dict, workers: int, folder: Path) -> float:
    """Wall time of the whole sweep, worker start-up included."""
    args = SweepOptions(workers=workers, overwrite=True)
    start = time.perf_counter()
    study = run_stage(build_spec(raw, f"workers{workers}"), folder / f"workers{workers}", args)
    seconds = time.perf_counter() - start
    done = sum(t.state.name == "COMPLETE" for t in study.trials)
    rate = 3600 * done / seconds
    print(f"{workers} worker(s): {done} trials in {seconds:.0f} s = {rate:.0f} trials/hour")
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--samples", type=int, default=1024, help="max_train_samples")
    parser.add_argument("--model", default="test_convnext")
    args = parser.parse_args()
    raw = sweep(args.trials, args.epochs, args.samples, args.model)
    with tempfile.TemporaryDirectory() as tmp:
        one = trials_per_hour(raw, 1, Path(tmp))
        two = trials_per_hour(raw, 2, Path(tmp))
    print(f"--workers 2 / --workers 1: {two / one:.2f}x trials per hour")


if __name__ == "__main__":
    main()

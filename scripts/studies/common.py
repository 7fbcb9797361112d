"""What every study shares: resumable runs, test accuracy, seeds, and tables of spreads."""

from __future__ import annotations

import json
import os
import shutil
import statistics
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")

ROOT = Path(__file__).resolve().parents[2]
FASHION = ["--dataset", "fashion_mnist", "--image_size", "32", "--report_to", "none"]
DONE = "study_run.json"  # written last in a run folder: the run finished and was scored


def pyplot():
    """Matplotlib without a display."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def finished(folder: Path) -> dict[str, Any] | None:
    """The stored outcome of a finished run, or None (a study resumes by skipping these)."""
    marker = folder / DONE
    return json.loads(marker.read_text()) if marker.is_file() else None


def resumable(folder: Path, run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """`run()` once per folder: a finished folder is read back, a half-written one redone."""
    done = finished(folder)
    if done is not None:
        return done
    if folder.exists():
        shutil.rmtree(folder)
    outcome = run()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / DONE).write_text(json.dumps(outcome, indent=2))
    return outcome


def train(folder: Path, overrides: list[str], test: bool = True) -> dict[str, Any]:
    """One `recipes train` run in this process (resumable), with its test accuracy."""
    from recipes.core.config import parse_config
    from recipes.training.route import run_recipe

    def run() -> dict[str, Any]:
        config = parse_config(None, [*overrides, "--output_dir", str(folder)])
        results = run_recipe(config)
        if test:
            results["test"] = score(config.data, folder / "best_model")
        return results

    return resumable(folder, run)


def range_test(work: Path, overrides: list[str], quick: bool) -> dict[str, float]:
    """`recipes check`'s LR range test on a study's recipe (resumable): the suggested LR (None
    when no LR worked) and the LR of the loss minimum."""
    from recipes.core.config import parse_config
    from recipes.tuning.inputs import check_recipe

    def run() -> dict[str, float]:
        config = parse_config(None, [*overrides, "--output_dir", str(work / "check")])
        steps = 30 if quick else 100
        found = check_recipe(config, overfit_steps=steps, sweep_steps=steps)["lr_range"].values
        return {"suggested_lr": found["suggested_lr"], "lr_at_min": found["lr_at_min"]}

    return resumable(work / "check-done", run)


def score(data_args: Any, model_dir: Path) -> dict[str, float]:
    """Accuracy, NLL and ECE of a saved model on the test split."""
    from recipes.ensembles.ensemble import score_saved

    return score_saved({"model": model_dir}, data_args)["model"]


def epochs(folder: Path) -> list[dict[str, Any]]:
    """The run's per-epoch records."""
    from recipes.core import runs

    return runs.read_jsonl(folder / runs.EPOCHS_FILE)


def spread(values: Iterable[float], digits: int = 4) -> str:
    """Mean ± standard deviation over repeats, and how many (n)."""
    values = list(values)
    if len(values) == 1:
        return f"{values[0]:.{digits}f} (n=1)"
    mean, std = statistics.mean(values), statistics.stdev(values)
    return f"{mean:.{digits}f} ± {std:.{digits}f} (n={len(values)})"


def table(header: list[str], rows: list[list[Any]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write(out: Path, name: str, markdown: str, rows: list[dict[str, Any]]) -> None:
    """The study's table as NAME.md (printed) and its rows as NAME.json."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.md").write_text(markdown)
    (out / f"{name}.json").write_text(json.dumps(rows, indent=2, default=str))
    print(markdown, flush=True)

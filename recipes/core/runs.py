"""The run folder, one lifecycle for every route: config, history, position, best model, results."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from recipes.core.config import RecipeConfig
from recipes.core.errors import RecipeError
from recipes.core.files import append_line, read_json_lines, write_atomic
from recipes.core.plots import plot_curves

CHECKPOINTS = "checkpoints"
STATE_FILE = "trainer_state.json"
STEPS_FILE = "steps.jsonl"
EPOCHS_FILE = "epochs.jsonl"
RESULTS_FILE = "results.json"
# Keys that may change between a run and its resumption without making it another run.
RESUMABLE_KEYS = {
    "output_dir",
    "resume_from_checkpoint",
    "overwrite_output_dir",
    "report_to",
    "num_workers",
    "logging_steps",
    "save_steps",
    "save_total_limit",
    "wandb_group",
}


def run_name(config: RecipeConfig) -> str:
    t = config.training
    return t.run_name or f"{config.data.dataset}-{config.model.model_name}-{config.model.mode}"


def run_dir(config: RecipeConfig) -> Path:
    """The output_dir, else runs/NAME; under `wandb agent` each sweep run gets its own folder."""
    sweep, run = os.environ.get("WANDB_SWEEP_ID"), os.environ.get("WANDB_RUN_ID")
    default = Path("runs") / (f"sweep-{sweep}/{run}" if sweep and run else run_name(config))
    return Path(config.training.output_dir or default)


def differing_keys(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    keys = (set(saved) | set(current)) - RESUMABLE_KEYS
    return sorted(k for k in keys if saved.get(k) != current.get(k))


MIN_FREE_BYTES = 200 * 2**20  # checkpoints of the models here are tens of MB


def check_writable(path: Path) -> None:
    """Refuse an output folder that is a file, cannot be written, or sits on a full disk."""
    parent = next(p for p in (path, *path.parents) if p.exists())
    if not parent.is_dir():
        raise RecipeError(
            f"output_dir {path}: {parent} is a file, not a folder; give a folder path"
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise RecipeError(f"output_dir {path}: {parent} is not writable; choose another folder")
    free = shutil.disk_usage(parent).free
    if free < MIN_FREE_BYTES:
        raise RecipeError(
            f"output_dir {path}: only {free / 2**20:.0f} MB free on its disk; free some space "
            "or choose a folder on another disk"
        )


def open_run_dir(
    config: RecipeConfig, is_main: bool, barrier: Callable[[], None] = lambda: None
) -> Path:
    """Create the run folder, or reuse it for the same recipe; refuse one made by another.

    Every process checks before the main one writes (`barrier` between), so none reads a
    config.yaml that is half written.
    """
    path = run_dir(config)
    check_writable(path)
    saved_path = path / "config.yaml"
    overwrite = config.training.overwrite_output_dir
    if saved_path.is_file() and not overwrite:
        saved = yaml.safe_load(saved_path.read_text()) or {}
        changed = differing_keys(saved, config.to_dict())
        if changed:
            raise RecipeError(
                f"run folder {path} was made by a different recipe "
                f"({', '.join(changed[:4])} differ); "
                "set --output_dir to a new folder or --overwrite_output_dir true"
            )
    barrier()
    if is_main:
        if overwrite and path.exists():
            shutil.rmtree(path)
        path.mkdir(parents=True, exist_ok=True)
        config.save(saved_path)
    barrier()
    return path


def checkpoint_dirs(path: Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first (ordered by the update step they hold)."""
    found = [p for p in (path / CHECKPOINTS).glob("step_*") if (p / STATE_FILE).is_file()]
    return sorted(found, key=lambda p: read_state(p)["step"])


def read_state(checkpoint: Path) -> dict[str, Any]:
    return json.loads((checkpoint / STATE_FILE).read_text())


def find_resume_checkpoint(path: Path, resume: str | None) -> Path | None:
    """'auto' takes the latest checkpoint of the run folder; a path must exist."""
    if resume is None:
        return None
    if resume == "auto":
        found = checkpoint_dirs(path)
        return found[-1] if found else None
    checkpoint = Path(resume)
    if not (checkpoint / STATE_FILE).is_file():
        raise RecipeError(f"no checkpoint at {checkpoint}; expected a folder with {STATE_FILE}")
    return checkpoint


def prune_checkpoints(path: Path, keep: int) -> None:
    for old in checkpoint_dirs(path)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)


def append_jsonl(file: Path, record: dict[str, Any]) -> None:
    append_line(file, json.dumps(record))


def read_jsonl(file: Path) -> list[dict[str, Any]]:
    return read_json_lines(file)


def truncate_history(path: Path, step: int) -> None:
    """On resume, forget what was logged after the checkpoint being resumed from."""
    for name in (STEPS_FILE, EPOCHS_FILE):
        file = path / name
        kept = [r for r in read_jsonl(file) if r["step"] <= step]
        write_atomic(file, "".join(json.dumps(r) + "\n" for r in kept))


def write_json(file: Path, value: dict[str, Any]) -> None:
    write_atomic(file, json.dumps(value, indent=2))


def new_state() -> dict[str, Any]:
    """The position a run resumes from, saved beside every checkpoint."""
    return {"epoch": 0, "step": 0, "batch_in_epoch": 0, "best_accuracy": -1.0, "best_epoch": -1}


def record_epoch(run_dir: Path, state: dict, record: dict, seconds: float, is_main: bool) -> bool:
    """Move the position past an epoch, log it; True when its validation accuracy is the best."""
    state.update(epoch=record["epoch"], batch_in_epoch=0)
    best = record["val_accuracy"] > state["best_accuracy"]
    if best:
        state.update(best_accuracy=record["val_accuracy"], best_epoch=record["epoch"])
    if is_main:
        append_jsonl(run_dir / EPOCHS_FILE, {**record, "seconds": seconds})
    return best


def results(
    run_dir: Path, state: dict, stopped: bool, end: tuple[str, int], train_examples: int, **extra
) -> dict:
    """What results.json holds on every route: position, best epoch, the last epoch's metrics.
    A stop counts as early only before `end`, the run's planned end (`("step", total)` or
    `("epoch", epochs)`): one asked at the end of the last part-way epoch finished the run."""
    key, last_position = end
    history = read_jsonl(run_dir / EPOCHS_FILE)
    last = history[-1] if history else {}
    return {
        "run_dir": str(run_dir),
        "train_examples": train_examples,
        "steps": state["step"],
        "epochs": state["epoch"],
        "stopped_early": stopped and state[key] < last_position,
        "best_val_accuracy": state["best_accuracy"],
        "best_epoch": state["best_epoch"],
        "seconds": last.get("seconds", 0.0),
        **{k: v for k, v in last.items() if k.startswith(("val_", "ema_val_", "train_"))},
        **extra,
    }


def finish(run_dir: Path, values: dict) -> dict:
    """The main process's last act: the learning-curve figure and results.json."""
    epochs = read_jsonl(run_dir / EPOCHS_FILE)
    if epochs:
        plot_curves(read_jsonl(run_dir / STEPS_FILE), epochs, run_dir / "curves.png")
    write_json(run_dir / RESULTS_FILE, values)
    return values

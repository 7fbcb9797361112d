"""The run folder: resolved config, JSON-lines history, checkpoints and where to resume."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from recipes.config import RecipeConfig
from recipes.errors import RecipeError

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


def open_run_dir(
    config: RecipeConfig, is_main: bool, barrier: Callable[[], None] = lambda: None
) -> Path:
    """Create the run folder, or reuse it for the same recipe; refuse one made by another.

    Every process checks before the main one writes (`barrier` between), so none reads a
    config.yaml that is half written.
    """
    path = run_dir(config)
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
    with file.open("a") as f:
        f.write(json.dumps(record) + "\n")


def read_jsonl(file: Path) -> list[dict[str, Any]]:
    if not file.is_file():
        return []
    return [json.loads(line) for line in file.read_text().splitlines() if line.strip()]


def truncate_history(path: Path, step: int) -> None:
    """On resume, forget what was logged after the checkpoint being resumed from."""
    for name in (STEPS_FILE, EPOCHS_FILE):
        file = path / name
        kept = [r for r in read_jsonl(file) if r["step"] <= step]
        file.write_text("".join(json.dumps(r) + "\n" for r in kept))


def write_json(file: Path, value: dict[str, Any]) -> None:
    file.write_text(json.dumps(value, indent=2))

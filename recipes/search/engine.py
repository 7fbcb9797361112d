"""The sweep engine: trials of a W&B sweep file on Optuna (SQLite or any storage URL), N workers."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import warnings
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.trial import TrialState

from recipes.core.errors import RecipeError
from recipes.core.files import write_atomic
from recipes.search.spec import SweepSpec, grid_points
from recipes.search.storage import make_storage, parse_url, shown, storage_lock
from recipes.search.trial import SKIPPED
from recipes.search.workers import counts, recover, run_workers

warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


@dataclass(frozen=True)
class SweepOptions:
    """How a sweep runs here: `recipes sweep`'s options, with its defaults."""

    workers: int = 1
    trials: int | None = None  # None: run_cap, or the whole grid
    storage: str | None = None  # None: SQLite in the sweep folder
    seed: int = 0
    qmc: bool = False
    overwrite: bool = False
    refine: bool = False
    heartbeat: int = 60  # seconds; a trial silent for twice this is retried elsewhere
    first: tuple[dict[str, Any], ...] = ()  # values the first trials take; the rest are sampled


UNTIL_STOPPED = sys.maxsize  # a random or bayes sweep without run_cap, as `wandb agent` runs it


def budget(spec: SweepSpec, trials: int | None) -> int:
    """Trials to run: --trials (like `wandb agent --count`), else run_cap, else the grid, else
    until stopped (Ctrl-C ends it; finished trials are kept)."""
    cap = trials or spec.run_cap
    if spec.method == "grid":
        return min(spec.grid_size(), cap or spec.grid_size())
    return cap or UNTIL_STOPPED


def open_study(
    spec: SweepSpec, folder: Path, url: str, args: SweepOptions, target: int
) -> optuna.Study:
    """Create the study, or reopen it for the same sweep file; refuse one made from another.
    Grid points are queued in order, each once, whichever process gets here first."""
    storage = make_storage(url, args.heartbeat)
    try:
        study_id = storage.get_study_id_from_name(spec.name)
    except KeyError:
        study_id = None
    same = json.loads(json.dumps(spec.raw))
    if study_id is not None and args.overwrite:
        optuna.delete_study(study_name=spec.name, storage=storage)
    elif study_id is not None and storage.get_study_user_attrs(study_id).get("sweep") != same:
        raise RecipeError(
            f"sweep {spec.name} in {folder} was made from a different sweep file; "
            "add --overwrite to start over, or set --output_dir to a new folder"
        )
    study = optuna.create_study(
        storage=storage, study_name=spec.name, direction=spec.direction, load_if_exists=True
    )
    study.set_user_attr("sweep", same)
    points = grid_points(spec)[:target] if spec.method == "grid" else list(args.first)
    if points:
        with storage_lock(url):  # two processes never queue a point twice
            for point in points:
                study.enqueue_trial(point, skip_if_exists=True)
    write_atomic(folder / "sweep.yaml", yaml.safe_dump(spec.raw, sort_keys=False))
    return study


def this_process() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def last_to_finish(study: optuna.Study, since: datetime) -> bool:
    """Whether this process ends the sweep: no trial is left anywhere, and the last trial to end
    was run here, or none ended since this process started (a rerun of a finished sweep). Only
    that process writes the summary and runs the refine stage; the others exit."""
    trials = [t for t in study.get_trials(deepcopy=False) if SKIPPED not in t.user_attrs]
    if any(t.state in (TrialState.RUNNING, TrialState.WAITING) for t in trials):
        return False
    ended = [t for t in trials if t.datetime_complete]
    if not any(t.datetime_complete >= since for t in ended):
        return True
    last = max(ended, key=lambda t: t.datetime_complete)
    return last.user_attrs.get("sweep_process") == this_process()


def run_stage(spec: SweepSpec, folder: Path, args: SweepOptions) -> optuna.Study:
    """Run (or finish) one sweep in `folder` with `args.workers` processes sharing the storage."""
    target = budget(spec, args.trials)
    if args.overwrite and (folder / "sweep.yaml").is_file():
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    url = args.storage or f"sqlite:///{folder.resolve() / 'optuna.db'}"
    study = open_study(spec, folder, url, args, target)
    recover(study)
    trials = study.get_trials(deepcopy=False)
    left = target - sum(counts(t) for t in trials if t.state != TrialState.WAITING)
    plan = "until stopped (Ctrl-C)" if target == UNTIL_STOPPED else f"{target} trials"
    todo = "" if target == UNTIL_STOPPED else f" ({max(left, 0)} to run)"
    print(
        f"sweep {spec.name}: {spec.method}, {plan}{todo}, "
        f"{args.workers} worker(s), storage {shown(parse_url(url))}"
    )
    job = (spec.raw, spec.name, str(folder), url, target, args.seed, args.heartbeat)
    run_workers((*job, this_process()), args.workers, args.qmc)
    return optuna.load_study(study_name=spec.name, storage=make_storage(url, args.heartbeat))

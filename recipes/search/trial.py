"""One sweep trial: the sweep's values drawn through Optuna, then one recipe run with them."""

from __future__ import annotations

import os
import socket
import warnings
from functools import partial
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, Trial

from recipes.core.config import parse_config
from recipes.core.errors import Interrupted
from recipes.search.params import Param
from recipes.search.spec import SweepSpec, trial_args

SKIPPED = "skipped"  # user attribute of a trial numbered after the budget ran out; never run


def as_best(trial: FrozenTrial) -> dict[str, Any]:
    """A finished trial as a sweep summary's `best`: its number, metric and what it recorded."""
    return {"trial": trial.number, "value": trial.value, **trial.user_attrs}


def suggest(trial: Trial, param: Param) -> Any:
    """Draw one parameter through Optuna's `suggest_*`, then turn the sample into its value."""
    dist = param.distribution
    if isinstance(dist, optuna.distributions.CategoricalDistribution):
        value = trial.suggest_categorical(param.name, dist.choices)
    elif isinstance(dist, optuna.distributions.IntDistribution):
        value = trial.suggest_int(param.name, dist.low, dist.high, step=dist.step, log=dist.log)
    else:
        value = trial.suggest_float(param.name, dist.low, dist.high, step=dist.step, log=dist.log)
    return param.decode(value) if param.decode else value


def report_epoch(trial: Trial, metric: str, epoch: int, record: dict) -> bool:
    """The engine's epoch hook: report the sweep metric, answer whether to prune."""
    if metric not in record:
        note = f"epoch {epoch} did not report {metric}; trial {trial.number} is not pruned"
        warnings.warn(note, stacklevel=2)
        return False
    trial.report(record[metric], epoch)
    return trial.should_prune()


def resume_folder(trial: Trial) -> Path | None:
    """A retried trial's earlier run folder, when it is on this machine: training resumes from
    its last checkpoint. (A retry keeps the failed attempt's attributes.)"""
    before = trial.user_attrs
    same_host = before.get("host") == socket.gethostname()
    return (
        Path(before["run_dir"]) if same_host and Path(before.get("run_dir", "")).is_dir() else None
    )


def run_trial(spec: SweepSpec, folder: Path, trial: Trial, sweep_process: str = "") -> float:
    """One trial is one `recipes train` run with the sweep's values as command-line overrides."""
    import torch

    from recipes.training.route import run_recipe

    values = {param.name: suggest(trial, param) for param in spec.params}
    history = trial.study._storage.get_trial_system_attrs(trial._trial_id).get("retry_history")
    first = (history or [trial.number])[0]
    run_dir = resume_folder(trial) or folder / "trials" / f"trial_{first:03d}"
    args = trial_args(spec, values) + [
        f"--output_dir={run_dir}",
        f"--run_name={spec.name}-{first:03d}",
        f"--wandb_group={spec.name}",
    ]
    for key, value in dict(
        values=values,
        run_dir=str(run_dir.resolve()),
        args=args,
        host=socket.gethostname(),
        pid=os.getpid(),
        sweep_process=sweep_process,
        threads=torch.get_num_threads(),
    ).items():
        trial.set_user_attr(key, value)
    try:
        config = parse_config(spec.recipe, args)
        results = run_recipe(config, partial(report_epoch, trial, spec.metric))
    except Interrupted:  # Ctrl-C: no error of the trial's; it resumes from its checkpoint
        raise KeyboardInterrupt from None
    except Exception as err:
        trial.set_user_attr("error", f"{type(err).__name__}: {err}"[:1000])
        raise
    trial.set_user_attr("epochs", results["epochs"])
    if results["stopped_early"]:  # by the pruner, before its last update
        raise optuna.TrialPruned(f"pruned after epoch {results['epochs']}")
    return results[spec.metric]

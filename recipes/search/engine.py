"""The sweep engine: trials of a W&B sweep file on Optuna (SQLite or any storage URL), N workers."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import socket
import warnings
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, Trial, TrialState

from recipes.core.config import parse_config
from recipes.core.errors import RecipeError
from recipes.search.params import Param
from recipes.search.spec import SweepSpec, build_spec, trial_args

warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
HEARTBEAT_SECONDS = 60  # trials of a vanished machine are retried after twice this


def make_storage(url: str) -> RDBStorage:
    """The sweep's state; SQLite waits for a busy database instead of failing at once."""
    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    return RDBStorage(
        url,
        engine_kwargs=engine,
        heartbeat_interval=HEARTBEAT_SECONDS,
        heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(),
    )


def make_sampler(spec: SweepSpec, seed: int, worker: int, existing: int, target: int, qmc: bool):
    """grid -> GridSampler, random -> Random (or QMC), bayes -> TPE; seeds differ per worker."""
    own_seed = seed + 1000 * worker + existing
    if spec.method == "grid":
        return optuna.samplers.GridSampler(spec.grid(), seed=seed)
    if spec.method == "bayes":
        startup = max(2, min(10, target // 3))
        return optuna.samplers.TPESampler(
            seed=own_seed, n_startup_trials=startup, multivariate=True, constant_liar=True
        )
    if qmc:
        return optuna.samplers.QMCSampler(seed=seed, scramble=True)
    return optuna.samplers.RandomSampler(seed=own_seed)


def make_pruner(spec: SweepSpec) -> optuna.pruners.BasePruner:
    if spec.hyperband:
        return optuna.pruners.HyperbandPruner(**spec.hyperband)
    return optuna.pruners.NopPruner()


def counts(trial: FrozenTrial) -> bool:
    """Trials that use the budget: all but killed ones, which are retried instead."""
    return trial.state != TrialState.FAIL or "error" in trial.user_attrs


def budget(spec: SweepSpec, trials: int | None) -> int:
    cap = trials or spec.run_cap
    if spec.method == "grid":
        return min(spec.grid_size(), cap or spec.grid_size())
    if not cap:
        raise RecipeError(
            "run_cap: a random or bayes sweep needs run_cap: N in the file or --trials N"
        )
    return cap


def is_alive(pid: int | None) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, TypeError, ValueError):
        return False
    except PermissionError:
        return True
    return True


def recover(study: optuna.Study) -> None:
    """Trials of a killed sweep run again: a dead local process's trial is failed, then retried."""
    trials = study.get_trials(deepcopy=False)
    retried = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
    host = socket.gethostname()
    for trial in trials:
        if trial.number in retried:
            continue
        mine = trial.user_attrs.get("host") == host
        if trial.state == TrialState.RUNNING and mine and not is_alive(trial.user_attrs.get("pid")):
            study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        elif trial.state != TrialState.FAIL or "error" in trial.user_attrs:
            continue
        RetryHeartbeatStaleTrialCallback()(study, study._storage.get_trial(trial._trial_id))


def open_study(spec: SweepSpec, folder: Path, url: str, overwrite: bool) -> optuna.Study:
    """Create the study, or reopen it for the same sweep file; refuse one made from another."""
    storage = make_storage(url)
    try:
        study_id = storage.get_study_id_from_name(spec.name)
    except KeyError:
        study_id = None
    same = json.loads(json.dumps(spec.raw))
    if study_id is not None and overwrite:
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
    (folder / "sweep.yaml").write_text(yaml.safe_dump(spec.raw, sort_keys=False))
    return study


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


def run_trial(spec: SweepSpec, folder: Path, trial: Trial) -> float:
    """One trial is one `recipes train` run with the sweep's values as command-line overrides."""
    import torch

    from recipes.training.route import run_recipe

    values = {param.name: suggest(trial, param) for param in spec.params}
    history = trial.study._storage.get_trial_system_attrs(trial._trial_id).get("retry_history")
    first = (history or [trial.number])[0]  # a retried trial resumes its original run folder
    run_dir = folder / "trials" / f"trial_{first:03d}"
    args = trial_args(spec, values) + [
        f"--output_dir={run_dir}",
        f"--run_name={spec.name}-{first:03d}",
        f"--wandb_group={spec.name}",
    ]
    for key, value in dict(
        values=values,
        run_dir=str(run_dir),
        args=args,
        host=socket.gethostname(),
        pid=os.getpid(),
        threads=torch.get_num_threads(),
    ).items():
        trial.set_user_attr(key, value)
    try:
        config = parse_config(spec.recipe, args)
        results = run_recipe(config, partial(report_epoch, trial, spec.metric))
    except Exception as err:
        trial.set_user_attr("error", f"{type(err).__name__}: {err}"[:1000])
        raise
    trial.set_user_attr("epochs", results["epochs"])
    if results["stopped_early"]:
        raise optuna.TrialPruned(f"pruned after epoch {results['epochs']}")
    return results[spec.metric]


def finished(spec: SweepSpec, target: int, study: optuna.Study) -> bool:
    trials = study.get_trials(deepcopy=False)
    done = [t.value for t in trials if t.state == TrialState.COMPLETE]
    hit = spec.target is not None and any(
        v >= spec.target if spec.goal == "maximize" else v <= spec.target for v in done
    )
    return hit or sum(map(counts, trials)) >= target


def stop_when_done(spec: SweepSpec, target: int, study: optuna.Study, _: FrozenTrial) -> None:
    if finished(spec, target, study):
        study.stop()


def work(
    raw: dict,
    name: str,
    folder: str,
    url: str,
    target: int,
    seed: int,
    worker: int,
    threads: int | None,
    qmc: bool,
) -> None:
    """A worker process (or the sweep process itself): run trials until the budget is used."""
    if threads:
        import torch

        torch.set_num_threads(threads)
    spec = build_spec(raw, name)
    study = optuna.load_study(
        study_name=spec.name, storage=make_storage(url), pruner=make_pruner(spec)
    )
    study.sampler = make_sampler(spec, seed, worker, len(study.trials), target, qmc)
    if finished(spec, target, study):
        return
    study.optimize(
        partial(run_trial, spec, Path(folder)),
        catch=(Exception,),
        callbacks=[partial(stop_when_done, spec, target)],
        gc_after_trial=True,
    )


def run_workers(job: tuple, workers: int, qmc: bool) -> None:
    """This process is worker 0; workers 1..N-1 are spawned; each gets its share of threads."""
    import torch

    own = torch.get_num_threads()
    threads = max(1, own // workers) if workers > 1 else None
    context = multiprocessing.get_context("spawn")
    procs = [context.Process(target=work, args=(*job, i, threads, qmc)) for i in range(1, workers)]
    for proc in procs:
        proc.start()
    try:
        work(*job, 0, threads, qmc)
    finally:
        torch.set_num_threads(own)
        for proc in procs:
            proc.join()
            if proc.exitcode:
                print(f"warning: worker {proc.name} exited with code {proc.exitcode}")


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


def run_stage(spec: SweepSpec, folder: Path, args: SweepOptions) -> optuna.Study:
    """Run (or finish) one sweep in `folder` with `args.workers` processes sharing the storage."""
    target = budget(spec, args.trials)
    if args.overwrite and (folder / "sweep.yaml").is_file():
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    url = args.storage or f"sqlite:///{folder.resolve() / 'optuna.db'}"
    study = open_study(spec, folder, url, args.overwrite)
    recover(study)
    trials = study.get_trials(deepcopy=False)
    left = target - sum(counts(t) for t in trials if t.state != TrialState.WAITING)
    print(
        f"sweep {spec.name}: {spec.method}, {target} trials ({max(left, 0)} to run), "
        f"{args.workers} worker(s), storage {url}"
    )
    job = (spec.raw, spec.name, str(folder), url, target, args.seed)
    run_workers(job, args.workers, args.qmc)
    return optuna.load_study(study_name=spec.name, storage=make_storage(url))

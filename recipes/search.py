"""Sweeps: one W&B sweep file run by a local Optuna engine (SQLite or any storage URL)."""

from __future__ import annotations

import argparse
import csv
import json
import math
import multiprocessing
import os
import shutil
import socket
import warnings
from functools import partial
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, Trial, TrialState

from recipes.config import parse_config
from recipes.errors import RecipeError
from recipes.sweep_spec import (
    Param,
    SweepSpec,
    agent_command,
    build_spec,
    describe,
    edge_values,
    grid_points,
    is_log,
    load_sweep,
    refine_sweep,
    trial_args,
)

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

    from recipes.engine import train

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
        results = train(parse_config(spec.recipe, args), partial(report_epoch, trial, spec.metric))
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


def run_stage(spec: SweepSpec, folder: Path, args: argparse.Namespace) -> optuna.Study:
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
    if args.workers == 1:
        work(*job, 0, None, args.qmc)
    else:
        import torch

        threads = max(1, torch.get_num_threads() // args.workers)
        context = multiprocessing.get_context("spawn")
        procs = [
            context.Process(target=work, args=(*job, i, threads, args.qmc))
            for i in range(args.workers)
        ]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join()
            if proc.exitcode:
                print(f"warning: worker {proc.name} exited with code {proc.exitcode}")
    return optuna.load_study(study_name=spec.name, storage=make_storage(url))


def print_plan(spec: SweepSpec, args: argparse.Namespace) -> None:
    """--dry-run: what would run, training nothing."""
    target = budget(spec, args.trials)
    pruner = f"hyperband {spec.hyperband}" if spec.hyperband else "none"
    print(
        f"sweep {spec.name}: method {spec.method}, metric {spec.metric} ({spec.goal}), "
        f"{target} trials, pruner {pruner}"
    )
    print("fixed: " + (" ".join(trial_args(spec, {})) or "(none)"))
    if spec.method == "grid":
        points = grid_points(spec)
        print(
            f"grid: {len(points)} combinations"
            + (f", {target} run (run_cap)" if target < len(points) else "")
        )
        for i, point in enumerate(points, 1):
            print(f"  {i:3d}. " + " ".join(f"{k}={v}" for k, v in point.items()))
    else:
        print("search space:")
        for param in spec.params:
            print(f"  {describe(param)}")
    first = {param.name: edge_values(param)[0] for param in spec.params}
    print("wandb agent runs, e.g.: " + " ".join(agent_command(spec.raw, {**spec.fixed, **first})))
    if args.refine or "refine" in spec.raw:
        print("then: a refine stage around the top trials, trained longer (refine.yaml)")


def top_values(spec: SweepSpec, study: optuna.Study, k: int) -> list[dict[str, Any]]:
    done = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    if not done:
        raise RecipeError(
            f"refine: no trial of {spec.name} finished, so there is nothing to refine around"
        )
    done.sort(key=lambda t: t.value, reverse=spec.goal == "maximize")
    return [t.user_attrs["values"] for t in done[:k]]


def refine(spec: SweepSpec, study: optuna.Study, folder: Path, args: argparse.Namespace):
    """Coarse to fine: a new W&B sweep file around the top trials, then run it here."""
    options = spec.raw.get("refine") or {}
    top = top_values(spec, study, options.get("top_k", 3))
    epochs = parse_config(spec.recipe, trial_args(spec, top[0])).training.num_epochs * 2
    refined = refine_sweep(spec, top, epochs)
    path = folder / "refine.yaml"
    path.write_text(yaml.safe_dump(refined, sort_keys=False))
    print(f"refine stage written to {path} (runs on W&B too: wandb sweep {path})")
    fine = build_spec(refined, refined["name"])
    return fine, run_stage(
        fine, folder / "refine", argparse.Namespace(**{**vars(args), "trials": None})
    )


def trial_rows(spec: SweepSpec, study: optuna.Study) -> list[dict[str, Any]]:
    """One row per trial: state, metric (last reported for pruned), epochs, time, values, error."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        value = t.value if t.state == TrialState.COMPLETE else None
        if t.state == TrialState.PRUNED and t.intermediate_values:
            value = t.intermediate_values[max(t.intermediate_values)]
        seconds = (
            (t.datetime_complete - t.datetime_start).total_seconds()
            if t.datetime_complete
            else None
        )
        rows.append(
            {
                "trial": t.number,
                "state": t.state.name.lower(),
                spec.metric: value,
                "epochs": t.user_attrs.get("epochs"),
                "seconds": seconds,
                **t.user_attrs.get("values", {}),
                "error": t.user_attrs.get("error", ""),
            }
        )
    return rows


def edge_warnings(spec: SweepSpec, best: dict[str, Any]) -> list[str]:
    """The lecture's check: a best value on the edge of its range means the range was too small."""
    out = []
    for param in spec.params:
        value, choices = best.get(param.name), getattr(param.distribution, "choices", ())
        numeric = [c for c in choices if isinstance(c, int | float) and not isinstance(c, bool)]
        if param.bounds:
            low, high = param.bounds
            scale = math.log if param.log else float
            where = (scale(value) - scale(low)) / ((scale(high) - scale(low)) or 1.0)
        elif len(numeric) >= 3 and len(numeric) == len(choices):
            low, high = min(numeric), max(numeric)
            where = 0.0 if value == low else 1.0 if value == high else 0.5
        else:
            continue
        if where <= 0.1 or where >= 0.9:
            side = "lower" if where <= 0.1 else "upper"
            out.append(
                f"best {param.name}={value:.4g} lies at the {side} edge of the searched range "
                f"[{low:.4g}, {high:.4g}]: widen the range and search again"
            )
    return out


def plot_sweep(spec: SweepSpec, rows: list[dict[str, Any]], folder: Path) -> list[Path]:
    """The metric against each parameter (log axes for log ranges) and the optimisation history."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [r for r in rows if r[spec.metric] is not None]
    fig, axes = plt.subplots(
        1, max(len(spec.params), 1), figsize=(4 * max(len(spec.params), 1), 3.4), squeeze=False
    )
    for ax, param in zip(axes[0], spec.params, strict=False):
        xs = [r[param.name] for r in done]
        if any(isinstance(x, str | bool) or x is None for x in xs):
            xs = [str(x) for x in xs]
        colors = ["tab:blue" if r["state"] == "complete" else "tab:gray" for r in done]
        ax.scatter(xs, [r[spec.metric] for r in done], c=colors)
        ax.set(xlabel=param.name, ylabel=spec.metric, xscale="log" if is_log(param) else "linear")
    fig.suptitle(f"{spec.name}: {spec.metric} per trial (gray: pruned)")
    fig.tight_layout()
    fig.savefig(folder / "metric_vs_params.png", dpi=90)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    values = [r[spec.metric] for r in rows if r["state"] == "complete"]
    best = max if spec.goal == "maximize" else min
    ax.plot(range(len(values)), values, "o", label="trial")
    ax.plot(
        range(len(values)),
        [best(values[: i + 1]) for i in range(len(values))],
        "-",
        label="best so far",
    )
    ax.set(xlabel="finished trial", ylabel=spec.metric, title=f"{spec.name}: optimisation history")
    ax.legend()
    fig.tight_layout()
    fig.savefig(folder / "history.png", dpi=90)
    plt.close(fig)
    return [folder / "metric_vs_params.png", folder / "history.png"]


def summarize(spec: SweepSpec, study: optuna.Study, folder: Path) -> dict[str, Any]:
    """Print and save the best trial with its config, the table of trials, plots and warnings."""
    rows = trial_rows(spec, study)
    columns = list(dict.fromkeys(k for r in rows for k in r))
    with (folder / "trials.csv").open("w", newline="") as f:
        csv.DictWriter(f, columns).writeheader()
        csv.DictWriter(f, columns).writerows(rows)
    print(f"{'trial':>5} {'state':<9} {spec.metric:>12} {'epochs':>6}  values")
    for r in rows:
        metric = "-" if r[spec.metric] is None else f"{r[spec.metric]:.4f}"
        values = " ".join(f"{p.name}={r.get(p.name)}" for p in spec.params)
        epochs = r["epochs"] or "-"
        print(f"{r['trial']:>5} {r['state']:<9} {metric:>12} {epochs:>6}  {values} {r['error']}")
    summary: dict[str, Any] = {
        "sweep": spec.name,
        "metric": spec.metric,
        "goal": spec.goal,
        "trials": rows,
    }
    if any(r["state"] == "complete" for r in rows):
        best = study.best_trial
        summary["best"] = {"trial": best.number, "value": best.value, **best.user_attrs}
        summary["warnings"] = edge_warnings(spec, best.user_attrs["values"])
        summary["plots"] = [str(p) for p in plot_sweep(spec, rows, folder)]
        print(
            f"best: trial {best.number}, {spec.metric} {best.value:.4f}, config "
            f"{best.user_attrs['run_dir']}/config.yaml"
        )
        print(
            "  recipes train "
            + " ".join(([spec.recipe] if spec.recipe else []) + best.user_attrs["args"])
        )
        for warning in summary["warnings"]:
            print(f"warning: {warning}")
    else:
        print(f"no trial of {spec.name} finished; see the error column above")
    (folder / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary


def sweep_command(argv: list[str]) -> None:
    """`recipes sweep SWEEP.yaml [--workers N] [--storage URL] [--dry-run] [--refine] ...`."""
    parser = argparse.ArgumentParser(
        prog="recipes sweep", description="run a W&B sweep file locally"
    )
    parser.add_argument("sweep", help="W&B sweep YAML (method, metric, parameters, ...)")
    parser.add_argument("--output_dir", help="sweep folder (default sweeps/NAME)")
    parser.add_argument("--storage", help="Optuna storage URL (default SQLite in the sweep folder)")
    parser.add_argument(
        "--workers", type=int, default=1, help="trials at once, in separate processes"
    )
    parser.add_argument(
        "--trials", type=int, help="number of trials (default run_cap or the whole grid)"
    )
    parser.add_argument("--seed", type=int, default=0, help="sampler seed")
    parser.add_argument(
        "--qmc", action="store_true", help="random method: quasi-random Sobol points"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="check the file, print what would run"
    )
    parser.add_argument(
        "--refine", action="store_true", help="then a refine stage around the top trials"
    )
    parser.add_argument("--overwrite", action="store_true", help="start the sweep folder over")
    args = parser.parse_args(argv)
    if args.workers < 1 or (args.trials is not None and args.trials < 1):
        raise RecipeError("--workers and --trials must be at least 1")
    spec = load_sweep(args.sweep)
    if args.dry_run:
        print_plan(spec, args)
        return
    folder = Path(args.output_dir or Path("sweeps") / spec.name)
    study = run_stage(spec, folder, args)
    summarize(spec, study, folder)
    if args.refine or "refine" in spec.raw:
        fine, fine_study = refine(spec, study, folder, args)
        summarize(fine, fine_study, folder / "refine")

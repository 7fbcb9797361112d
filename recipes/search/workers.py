"""Processes sharing one sweep: each runs trials until the budget is used, across all of them.

The budget is exact however many processes or machines share the study: trial numbers are
handed out by the storage in order, so a trial that finds `target` budget-using trials before
it was started after the budget ran out and does not run (it is kept as a pruned trial marked
`skipped`, which nothing counts). A process whose trials are done stays until no trial is left
running anywhere: a trial of a killed process goes stale (no heartbeat for twice the interval),
is failed and queued again, and a process still in the sweep takes it up from its checkpoint.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import time
from functools import partial
from pathlib import Path

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback, fail_stale_trials
from optuna.trial import FrozenTrial, Trial, TrialState

from recipes.search.samplers import make_pruner, make_sampler
from recipes.search.spec import SweepSpec, build_spec
from recipes.search.storage import make_storage
from recipes.search.trial import SKIPPED, run_trial

POLL_SECONDS = 3  # how often a process whose trials are done looks for stale or new ones


def counts(trial: FrozenTrial) -> bool:
    """Trials that use the budget: all but killed ones (retried instead) and skipped ones."""
    if SKIPPED in trial.user_attrs:
        return False
    return trial.state != TrialState.FAIL or "error" in trial.user_attrs


def finished(spec: SweepSpec, target: int, study: optuna.Study) -> bool:
    """The metric's target reached, or the budget used with nothing left queued."""
    trials = study.get_trials(deepcopy=False)
    done = [t.value for t in trials if t.state == TrialState.COMPLETE]
    hit = spec.target is not None and any(
        v >= spec.target if spec.goal == "maximize" else v <= spec.target for v in done
    )
    queued = any(t.state == TrialState.WAITING for t in trials)
    return hit or (not queued and sum(map(counts, trials)) >= target)


def over_budget(trial: Trial, target: int) -> bool:
    """True for a trial numbered after the budget was used up (by any process)."""
    earlier = [t for t in trial.study.get_trials(deepcopy=False) if t.number < trial.number]
    return sum(map(counts, earlier)) >= target


class CtrlC:
    """Ctrl-C lands where it is safe: inside a trial's training (which checkpoints and stops)
    it interrupts at once; anywhere else (Optuna telling the storage a result) it is noted,
    and the sweep stops after that step."""

    requested = False
    in_trial = False

    @classmethod
    def handle(cls, signum, frame) -> None:
        cls.requested = True
        if cls.in_trial:
            raise KeyboardInterrupt

    @classmethod
    def check(cls) -> None:
        if cls.requested:
            raise KeyboardInterrupt


class QuietInterrupt(logging.Filter):
    """Optuna logs a trial ended by Ctrl-C with a traceback; one line says what happens."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[0] is KeyboardInterrupt:
            record.msg, record.args, record.exc_info = INTERRUPTED_TRIAL, (), None
        return True


INTERRUPTED_TRIAL = "a trial was interrupted (Ctrl-C); it runs again when the sweep is restarted"
logging.getLogger("optuna.study._optimize").addFilter(QuietInterrupt())


def objective(spec: SweepSpec, folder: Path, target: int, process: str, trial: Trial) -> float:
    if over_budget(trial, target):
        trial.set_user_attr(SKIPPED, "the budget was used up by other processes")
        trial.study.stop()
        raise optuna.TrialPruned("budget used up")
    CtrlC.check()
    CtrlC.in_trial = True
    try:
        return run_trial(spec, folder, trial, process)
    finally:
        CtrlC.in_trial = False


def stop_when_done(spec: SweepSpec, target: int, study: optuna.Study, _: FrozenTrial) -> None:
    if finished(spec, target, study) or CtrlC.requested:
        study.stop()


def running(study: optuna.Study) -> bool:
    return any(t.state == TrialState.RUNNING for t in study.get_trials(deepcopy=False))


def work(
    raw: dict,
    name: str,
    folder: str,
    url: str,
    target: int,
    seed: int,
    heartbeat: int,
    process: str,
    worker: int,
    threads: int | None,
    qmc: bool,
) -> None:
    """A worker process (or the sweep process itself): run trials until the budget is used and
    no trial runs anywhere (a stale one is retried here)."""
    if threads:
        import torch

        torch.set_num_threads(threads)
    spec = build_spec(raw, name)
    storage = make_storage(url, heartbeat)
    study = optuna.load_study(study_name=spec.name, storage=storage, pruner=make_pruner(spec))
    study.sampler = make_sampler(spec, seed, worker, len(study.trials), target, qmc)
    run = partial(objective, spec, Path(folder), target, process)
    CtrlC.requested, previous = False, signal.signal(signal.SIGINT, CtrlC.handle)
    try:
        share_trials(spec, target, study, run, heartbeat)
    except KeyboardInterrupt:
        if worker:  # a spawned worker ends quietly; the sweep process says what was kept
            return
        raise
    finally:
        signal.signal(signal.SIGINT, previous)


def share_trials(spec: SweepSpec, target: int, study: optuna.Study, run, heartbeat: int) -> None:
    """Trials until the budget is used and none runs anywhere; then stale ones are retried."""
    while True:
        CtrlC.check()
        fail_stale_trials(study)
        if not finished(spec, target, study):
            study.optimize(
                run, catch=(Exception,), gc_after_trial=True,
                callbacks=[partial(stop_when_done, spec, target)],
            )  # fmt: skip
        if finished(spec, target, study) and not running(study):
            return
        time.sleep(min(heartbeat, POLL_SECONDS))


def start_ignoring_ctrl_c(procs: list) -> None:
    """Start spawned workers with Ctrl-C ignored until `work` installs its handler: one that
    lands while a worker still imports would otherwise print a KeyboardInterrupt traceback
    (Python keeps an inherited SIG_IGN; the sweep process notes Ctrl-C and stops them)."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        for proc in procs:
            proc.start()
    finally:
        signal.signal(signal.SIGINT, previous)


def run_workers(job: tuple, workers: int, qmc: bool) -> None:
    """This process is worker 0; workers 1..N-1 are spawned; each gets its share of threads."""
    import torch

    own = torch.get_num_threads()
    threads = max(1, own // workers) if workers > 1 else None
    context = multiprocessing.get_context("spawn")
    procs = [context.Process(target=work, args=(*job, i, threads, qmc)) for i in range(1, workers)]
    start_ignoring_ctrl_c(procs)
    try:
        work(*job, 0, threads, qmc)
    finally:
        torch.set_num_threads(own)
        for proc in procs:
            proc.join()
            if proc.exitcode:
                print(f"warning: worker {proc.name} exited with code {proc.exitcode}")


def is_alive(pid: int | None) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, TypeError, ValueError):
        return False
    except PermissionError:
        return True
    return True


def recover(study: optuna.Study) -> None:
    """Trials of a killed sweep on this machine run again at once (no wait for the heartbeat):
    a dead local process's trial is failed, then queued again."""
    trials = study.get_trials(deepcopy=False)
    retried = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
    host = socket.gethostname()
    for trial in trials:
        if trial.number in retried or SKIPPED in trial.user_attrs:
            continue
        mine = trial.user_attrs.get("host") == host
        if trial.state == TrialState.RUNNING and mine and not is_alive(trial.user_attrs.get("pid")):
            study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        elif trial.state != TrialState.FAIL or "error" in trial.user_attrs:
            continue
        RetryHeartbeatStaleTrialCallback()(study, study._storage.get_trial(trial._trial_id))

"""How a sweep's method and early termination map onto Optuna's samplers and pruners."""

from __future__ import annotations

import optuna

from recipes.search.hyperband import WandbHyperbandPruner
from recipes.search.spec import SweepSpec


def make_sampler(spec: SweepSpec, seed: int, worker: int, existing: int, target: int, qmc: bool):
    """random -> Random (or QMC), bayes -> TPE; seeds differ per worker. Grid points are queued
    in the study when it is made, so the grid's sampler never chooses one."""
    own_seed = seed + 1000 * worker + existing
    if spec.method == "bayes":
        startup = max(2, min(10, target // 3))
        return optuna.samplers.TPESampler(
            seed=own_seed, n_startup_trials=startup, multivariate=True, constant_liar=True
        )
    if qmc and spec.method == "random":
        return optuna.samplers.QMCSampler(seed=seed, scramble=True)
    return optuna.samplers.RandomSampler(seed=own_seed)


def make_pruner(spec: SweepSpec) -> optuna.pruners.BasePruner:
    """early_terminate: W&B's Hyperband rule; the optuna_hyperband extension: Optuna's own."""
    if spec.hyperband:
        return WandbHyperbandPruner(spec.hyperband)
    if spec.optuna_hyperband:
        return optuna.pruners.HyperbandPruner(**spec.optuna_hyperband)
    return optuna.pruners.NopPruner()

"""W&B's `early_terminate: hyperband` rule as an Optuna pruner (not Optuna's own Hyperband).

The rule of wandb/sweeps (`hyperband_stopping.py`): bands are iteration counts, from `min_iter`
(min_iter * eta**k) or from `max_iter` and `s` (max_iter / eta**k, k = 1..s, below 1 dropped).
The iteration is the number of times the metric was logged (one per epoch here). At each band
the threshold is the value that the best 1/eta of all trials that reached it had there; a
running trial past a band is stopped when its value at the band (`strict`, the default) or its
best value so far (non-strict) is worse than that threshold. As an Optuna pruner it keeps the
storage, the workers and resume working.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import optuna
from optuna.trial import FrozenTrial, TrialState

from recipes.core.errors import RecipeError

KEYS = ("type", "max_iter", "min_iter", "s", "eta", "strict")


@dataclass(frozen=True)
class HyperbandRule:
    """The bands (iterations, ascending), eta and which value is compared at a band."""

    bands: tuple[int, ...]
    eta: float = 3.0
    strict: bool = True

    def thresholds(self, histories: list[list[float]]) -> list[float]:
        """Per band, the value the top 1/eta of the histories that reached it had (minimised)."""
        out = []
        for band in self.bands:
            values = sorted(h[band - 1] for h in histories if len(h) >= band)
            out.append(values[int((1.0 / self.eta) * len(values))] if values else math.inf)
        return out

    def stops(self, history: list[float], histories: list[list[float]]) -> bool:
        """Whether a running trial with `history` (minimised) is stopped now."""
        passed = [(b, t) for b, t in zip(self.bands, self.thresholds(histories), strict=True)
                  if b <= len(history)]  # fmt: skip
        if not passed:
            return False
        band, threshold = passed[-1]
        value = history[band - 1] if self.strict else min(history)
        return value > threshold


def read_rule(stop: dict) -> HyperbandRule:
    """early_terminate's keys as W&B reads them, refused in one line where its schema does."""
    unknown = [k for k in stop if k not in KEYS]
    if unknown:
        raise RecipeError(f"early_terminate: unknown key {unknown[0]!r}; valid: {', '.join(KEYS)}")
    eta, strict = stop.get("eta", 3), stop.get("strict", True)
    if not isinstance(eta, int | float) or isinstance(eta, bool) or eta <= 1:
        raise RecipeError(f"early_terminate.eta: must be a number above 1, got {eta!r}")
    if not isinstance(strict, bool):
        raise RecipeError(f"early_terminate.strict: must be true or false, got {strict!r}")
    if "max_iter" in stop and "s" in stop:
        bands = max_iter_bands(stop["max_iter"], stop["s"], eta)
    elif "min_iter" in stop:
        low = stop["min_iter"]
        if not isinstance(low, int) or isinstance(low, bool) or low < 1:
            raise RecipeError(f"early_terminate.min_iter: must be an integer >= 1, got {low!r}")
        bands = [int(low * eta**k) for k in range(100)]  # as W&B: 100 bands, most never reached
    else:
        raise RecipeError("early_terminate: hyperband needs min_iter, or max_iter and s")
    if not bands:
        raise RecipeError(
            "early_terminate: no band of at least 1 iteration; raise max_iter or lower s"
        )
    return HyperbandRule(tuple(sorted(bands)), float(eta), strict)


def max_iter_bands(max_iter, s, eta: float) -> list[int]:
    if not isinstance(max_iter, int) or isinstance(max_iter, bool):
        raise RecipeError(f"early_terminate.max_iter: must be an integer, got {max_iter!r}")
    if not isinstance(s, int | float) or isinstance(s, bool):
        raise RecipeError(f"early_terminate.s: must be a number, got {s!r}")
    bands, band = [], float(max_iter)
    for _ in range(int(math.ceil(s))):
        band /= eta
        if band < 1:
            break
        bands.append(int(band))
    return bands


def history(trial: FrozenTrial, sign: float) -> list[float]:
    """The metric in the order it was logged, negated when it is maximised."""
    return [sign * trial.intermediate_values[step] for step in sorted(trial.intermediate_values)]


class WandbHyperbandPruner(optuna.pruners.BasePruner):
    """Prune as W&B's sweep controller stops runs, judged each time a trial reports."""

    def __init__(self, rule: HyperbandRule):
        self.rule = rule

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        sign = -1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else 1.0
        others = study.get_trials(
            deepcopy=False, states=tuple(s for s in TrialState if s != TrialState.WAITING)
        )
        histories = [h for t in others if (h := history(t, sign))]
        return self.rule.stops(history(trial, sign), histories)

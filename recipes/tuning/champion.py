"""Which values a search stage hands on: its best trial only when it beats the incumbent (the
recipe's own values, or the stage before's choice, run as the stage's first trial) by more than
the validation set's noise. On a tie the incumbent stays: a recipe's defaults are an expert's
prior, and a short trial's lead of one standard error is as likely luck as skill."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from recipes.core import runs
from recipes.core.errors import RecipeError
from recipes.search.trial import as_best

Z = 2.0  # standard errors of the difference that a challenger must clear


def val_samples(run_dir: str) -> int:
    """The validation images a trial was scored on (0 when its run folder says nothing)."""
    results = Path(run_dir) / runs.RESULTS_FILE
    return json.loads(results.read_text()).get("val_samples", 0) if results.is_file() else 0


def difference_error(a: float, b: float, n: int) -> float:
    """One standard error of the difference of two accuracies on the same n images, taken as
    independent (an overestimate: two models' mistakes are correlated)."""
    return math.sqrt((a * (1 - a) + b * (1 - b)) / n) if n else 0.0


def ran(trial: FrozenTrial, values: dict[str, Any]) -> bool:
    """Whether the trial trained these values (a subset of its own)."""
    own = trial.user_attrs.get("values", {})
    return bool(values) and all(own.get(k) == v for k, v in values.items())


def champion(study: optuna.Study, incumbent: dict[str, Any] | None) -> tuple[dict[str, Any], str]:
    """The stage's choice and why; `incumbent`: the values to beat, which its first trial ran."""
    done = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    if not done:
        raise RecipeError("no trial finished; see the trial tables in the tune folder")
    best = max(done, key=lambda t: t.value)
    first = next((t for t in done if t.number == 0 and ran(t, incumbent or {})), None)
    if first is None or first is best:
        return as_best(best), f"trial {best.number} is the best ({best.value:.4f})"
    n = val_samples(first.user_attrs["run_dir"])
    margin = Z * difference_error(best.value, first.value, n)
    versus = (
        f"trial {best.number} ({best.value:.4f}) against trial 0, the incumbent "
        f"({first.value:.4f}), with {Z:g} standard errors = {margin:.4f} on {n} images"
    )
    if best.value - first.value > margin:
        return as_best(best), f"{versus}: trial {best.number} wins"
    return as_best(first), f"{versus}: no clear win, the incumbent's values go on"

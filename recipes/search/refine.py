"""Coarse to fine: a new W&B sweep file with ranges narrowed around the top trials, run longer."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState

from recipes.core.config import parse_config
from recipes.core.errors import RecipeError
from recipes.core.files import write_atomic
from recipes.search.engine import SweepOptions, run_stage
from recipes.search.params import Param, is_log
from recipes.search.spec import SweepSpec, build_spec, trial_args

# Ranges a refine stage never crosses, whatever the coarse trials did; `recipes tune` states them.
LIMITS = {
    "learning_rate": (1e-6, 1.0),
    "weight_decay": (0.0, 0.3),
    "label_smoothing": (0.0, 0.3),
    "momentum": (0.0, 0.999),
    "crop_scale": (0.05, 1.0),
    "hflip": (0.0, 1.0),
    "max_grad_norm": (0.0, 10.0),
    "warmup_epochs": (0.0, 10.0),
    "ema_decay": (0.0, 0.9999),
}
EDGE = 0.1  # a best value within a tenth of the range of an edge lies on that edge


def coarse_range(param: Param, values: list[float]) -> tuple[float, float]:
    """The range the coarse stage searched: its bounds, its listed numbers, or the values seen."""
    choices = getattr(param.distribution, "choices", None) if param.decode is None else None
    if param.bounds:
        return param.bounds
    return (min(choices), max(choices)) if choices else (min(values), max(values))


def _narrow(param: Param, values: list[float], best: float) -> dict:
    """A range around the top trials, inside the coarse range. Only an edge the best value lies
    on moves out, by at most a decade on a log scale (half the width on a linear one); the hard
    limits hold."""
    known = coarse_range(param, values)
    log = is_log(param) or (known[0] > 0 and known[1] >= 10 * known[0])
    scale, unscale = (math.log, math.exp) if log else (float, float)
    edges = scale(known[0]), scale(known[1])
    width = edges[1] - edges[0] or abs(edges[0]) or 1.0
    low, high = scale(min(values)), scale(max(values))
    pad = max((high - low) / 4, width / 20)
    low, high = max(edges[0], low - pad), min(edges[1], high + pad)
    where, step = (scale(best) - edges[0]) / width, math.log(10) if log else width / 2
    if where <= EDGE:
        low = edges[0] - step
    if where >= 1 - EDGE:
        high = edges[1] + step
    floor, ceiling = LIMITS.get(param.name.split(".")[-1], (-math.inf, math.inf))
    low, high = max(unscale(low), floor), min(unscale(high), ceiling)
    if all(isinstance(v, int) for v in values):
        low, high = math.floor(low), max(math.ceil(high), math.floor(low) + 1)
        if log:
            return {"distribution": "q_log_uniform_values", "min": max(low, 1), "max": high, "q": 1}
        return {"distribution": "int_uniform", "min": low, "max": high}
    low, high = float(f"{low:.3g}"), float(f"{high:.3g}")
    if low >= high:
        return {"value": low}
    kind = "log_uniform_values" if log and low > 0 else "uniform"
    return {"distribution": kind, "min": low, "max": high}


def refine_parameter(param: Param, values: list[Any]) -> dict:
    """Numbers get a narrowed range; other choices keep only those of the top trials (the best
    trial's value first)."""
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
    choices = getattr(param.distribution, "choices", None) if param.decode is None else None
    if numeric and (choices is None or len(set(choices)) > 2):
        return _narrow(param, values, values[0])
    kept = [v for v in (choices or values) if v in values]
    kept = list(dict.fromkeys(kept))
    return {"value": kept[0]} if len(kept) == 1 else {"values": kept}


def refine_sweep(spec: SweepSpec, top: list[dict[str, Any]], num_epochs: int) -> dict:
    """The refine stage as a W&B sweep mapping: ranges around `top` (flat values), longer runs."""
    options = spec.raw.get("refine") or {}
    refined = {k: v for k, v in spec.raw.items() if k not in ("refine", "early_terminate", "name")}
    refined["name"] = f"{spec.name}-refine"
    refined["method"] = options.get("method", "bayes" if spec.method == "bayes" else "random")
    refined["run_cap"] = options.get("run_cap", spec.run_cap or len(top))
    if options.get("early_terminate"):
        refined["early_terminate"] = options["early_terminate"]
    flat: dict[str, Any] = {}
    for param in spec.params:
        flat[param.name] = refine_parameter(param, [t[param.name] for t in top])
    for name, value in spec.fixed.items():
        if isinstance(value, dict):
            flat.update({f"{name}.{k}": {"value": v} for k, v in value.items()})
        else:
            flat[name] = {"value": value}
    flat["num_epochs"] = {"value": options.get("num_epochs", num_epochs)}
    if "max_train_samples" in options:  # e.g. coarse trials on a subset, refine on all
        flat["max_train_samples"] = {"value": options["max_train_samples"]}
    parameters: dict[str, Any] = {}
    for name, cfg in flat.items():
        top_name, _, key = name.partition(".")
        if key:
            parameters.setdefault(top_name, {"parameters": {}})["parameters"][key] = cfg
        else:
            parameters[name] = cfg
    refined["parameters"] = parameters
    return refined


def top_values(
    spec: SweepSpec, study: optuna.Study, k: int | None, incumbent: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """The values of the best k finished trials, best first; k defaults to the best quarter
    (at least 2). The `incumbent`'s values, when given, go first: the ranges hold them, and
    their place decides which edges move."""
    done = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    if not done:
        raise RecipeError(
            f"refine: no trial of {spec.name} finished, so there is nothing to refine around"
        )
    done.sort(key=lambda t: t.value, reverse=spec.goal == "maximize")
    top = [t.user_attrs["values"] for t in done[: k or max(2, math.ceil(len(done) / 4))]]
    return top if incumbent is None else [incumbent, *(v for v in top if v != incumbent)]


def takes(param: Param, value: Any) -> bool:
    """Whether Optuna can be given `value` for `param` as it is (no W&B quantile mapping)."""
    dist = param.distribution
    if param.decode is not None:
        return False
    if isinstance(dist, CategoricalDistribution):
        return value in dist.choices
    return isinstance(value, int | float) and dist.low <= value <= dist.high


def promoted(fine: SweepSpec, best: dict[str, Any]) -> dict[str, Any]:
    """The best trial's values that the refined sweep can take: its first trial runs them at
    the longer length, so the incumbent competes with the new points on equal terms."""
    return {p.name: best[p.name] for p in fine.params if p.name in best and takes(p, best[p.name])}


def refine(
    spec: SweepSpec,
    study: optuna.Study,
    folder: Path,
    args: SweepOptions,
    trials: int | None = None,
    incumbent: dict[str, Any] | None = None,
):
    """Coarse to fine: a new W&B sweep file around the top trials, then run it here (`trials` of
    its run_cap, as `wandb agent --count`, when given). Its first trial runs the `incumbent`
    values (default: the best trial's) again, at the longer length."""
    options = spec.raw.get("refine") or {}
    top = top_values(spec, study, options.get("top_k"), incumbent)
    epochs = parse_config(spec.recipe, trial_args(spec, top[0])).training.num_epochs * 2
    refined = refine_sweep(spec, top, epochs)
    path = folder / "refine.yaml"
    write_atomic(path, yaml.safe_dump(refined, sort_keys=False))
    print(f"refine stage written to {path} (runs on W&B too: wandb sweep {path})")
    fine = build_spec(refined, refined["name"])
    first = promoted(fine, top[0])
    options = dataclasses.replace(args, trials=trials, first=(first,) if first else ())
    return fine, run_stage(fine, folder / "refine", options)

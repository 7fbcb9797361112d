"""Coarse to fine: a new W&B sweep file with ranges narrowed around the top trials, run longer."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.trial import TrialState

from recipes.core.config import parse_config
from recipes.core.errors import RecipeError
from recipes.core.files import write_atomic
from recipes.search.engine import SweepOptions, run_stage
from recipes.search.params import Param, is_log
from recipes.search.spec import SweepSpec, build_spec, trial_args


def _widen(param: Param, values: list[float]) -> dict:
    """A range around the top trials' values, padded so it can move past the coarse edges."""
    choices = getattr(param.distribution, "choices", None) if param.decode is None else None
    known = param.bounds or (
        (min(choices), max(choices)) if choices else (min(values), max(values))
    )
    log = is_log(param) or (known[0] > 0 and known[1] >= 10 * known[0])
    scale = math.log if log else float
    low, high = scale(min(values)), scale(max(values))
    pad = max((high - low) / 2, (scale(known[1]) - scale(known[0])) / 10, 1e-12)
    low, high = low - pad, high + pad
    if log:
        low, high = math.exp(low), math.exp(high)
    elif known[0] >= 0:
        low = max(low, 0.0)
    if all(isinstance(v, int) for v in values):
        low = max(math.floor(low), 1 if known[0] >= 1 else math.floor(low))
        high = max(math.ceil(high), low + 1)
        if log:
            return {"distribution": "q_log_uniform_values", "min": low, "max": high, "q": 1}
        return {"distribution": "int_uniform", "min": low, "max": high}
    kind = "log_uniform_values" if log else "uniform"
    return {"distribution": kind, "min": float(f"{low:.3g}"), "max": float(f"{high:.3g}")}


def refine_parameter(param: Param, values: list[Any]) -> dict:
    """Numbers get a narrowed range; other choices keep only those of the top trials."""
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
    choices = getattr(param.distribution, "choices", None) if param.decode is None else None
    if numeric and (choices is None or len(set(choices)) > 2):
        return _widen(param, values)
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
    parameters: dict[str, Any] = {}
    for name, cfg in flat.items():
        top_name, _, key = name.partition(".")
        if key:
            parameters.setdefault(top_name, {"parameters": {}})["parameters"][key] = cfg
        else:
            parameters[name] = cfg
    refined["parameters"] = parameters
    return refined


def top_values(spec: SweepSpec, study: optuna.Study, k: int) -> list[dict[str, Any]]:
    done = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    if not done:
        raise RecipeError(
            f"refine: no trial of {spec.name} finished, so there is nothing to refine around"
        )
    done.sort(key=lambda t: t.value, reverse=spec.goal == "maximize")
    return [t.user_attrs["values"] for t in done[:k]]


def refine(spec: SweepSpec, study: optuna.Study, folder: Path, args: SweepOptions):
    """Coarse to fine: a new W&B sweep file around the top trials, then run it here."""
    options = spec.raw.get("refine") or {}
    top = top_values(spec, study, options.get("top_k", 3))
    epochs = parse_config(spec.recipe, trial_args(spec, top[0])).training.num_epochs * 2
    refined = refine_sweep(spec, top, epochs)
    path = folder / "refine.yaml"
    write_atomic(path, yaml.safe_dump(refined, sort_keys=False))
    print(f"refine stage written to {path} (runs on W&B too: wandb sweep {path})")
    fine = build_spec(refined, refined["name"])
    return fine, run_stage(fine, folder / "refine", dataclasses.replace(args, trials=None))

"""A sweep file's parameters: each W&B distribution as the Optuna distribution that samples it."""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from statistics import NormalDist
from typing import Any

import numpy as np
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from recipes.core.config import ARGUMENT_CLASSES, check_keys
from recipes.core.errors import RecipeError

GRID_KINDS = ("categorical", "int_uniform", "q_uniform")


EPS = 1e-6  # keeps the normal quantile finite: about +-4.75 sigma


DICT_FIELDS = {
    f.name for c in ARGUMENT_CLASSES for f in dataclasses.fields(c) if "dict" in str(f.type)
}


@dataclass(frozen=True)
class Param:
    """One searched argument: what Optuna samples, and how a sample becomes the value."""

    name: str  # a training argument, or "argument.key" inside a dict argument
    kind: str  # the W&B distribution name
    distribution: BaseDistribution
    decode: Callable[[Any], Any] | None = None
    log: bool = False  # the range is logarithmic: log axes, log-space refinement
    bounds: tuple[float, float] | None = None  # the searched range in value space


def _quantize(q: float, value: float) -> float:
    rounded = round(value / q) * q
    return int(rounded) if isinstance(q, int) else rounded


def _normal(mu: float, sigma: float, log: bool, q: float | None, u: float) -> float:
    """W&B's normal families from a uniform sample: the quantile, exp for log, then rounding."""
    value = NormalDist(mu, sigma).inv_cdf(u)
    value = math.exp(value) if log else value
    return _quantize(q, value) if q else value


def _pick(values: list, cumulative: list[float], u: float) -> Any:
    return values[min(sum(u >= c for c in cumulative), len(values) - 1)]


def _floats(where: str, cfg: dict, *keys: str) -> list[float]:
    missing = [k for k in keys if not isinstance(cfg.get(k), int | float)]
    if missing:
        raise RecipeError(f"{where}: needs numeric {' and '.join(missing)}")
    return [cfg[k] for k in keys]


def _range(where: str, cfg: dict, positive: bool = False) -> tuple[float, float]:
    low, high = _floats(where, cfg, "min", "max")
    if low > high:
        raise RecipeError(f"{where}: min {low} is above max {high}; swap them")
    if positive and low <= 0:
        raise RecipeError(f"{where}: min must be above 0 for a log range, got {low}")
    return low, high


def _categorical(where: str, cfg: dict, method: str) -> Param:
    values = cfg["values"]
    if not isinstance(values, list) or not values:
        raise RecipeError(f"{where}.values: give a non-empty list")
    if any(not isinstance(v, str | int | float | bool | type(None)) for v in values):
        raise RecipeError(f"{where}.values: only numbers, strings, booleans or null")
    probs = cfg.get("probabilities")
    if probs is not None and method == "grid":
        raise RecipeError(
            f"{where}.probabilities: grid search walks every value (W&B refuses probabilities "
            "there); drop them or use method: random"
        )
    if probs is None:
        return Param(where, "categorical", CategoricalDistribution(values))
    if len(probs) != len(values) or abs(sum(probs) - 1) > 1e-6:
        raise RecipeError(f"{where}.probabilities: one per value, summing to 1")
    cumulative = list(itertools.accumulate(probs))
    decode = partial(_pick, values, cumulative)
    return Param(where, "categorical", FloatDistribution(0.0, 1.0), decode)


def _continuous(where: str, kind: str, cfg: dict) -> Param:
    """Each W&B distribution as the Optuna distribution that samples it (W&B's formulas)."""
    q = cfg.get("q", 1.0)
    if kind == "int_uniform":
        low, high = _range(where, cfg)
        if not (isinstance(low, int) and isinstance(high, int)):
            raise RecipeError(f"{where}: int_uniform needs integer min and max")
        return Param(where, kind, IntDistribution(low, high), bounds=(low, high))
    if kind == "uniform":
        low, high = _range(where, cfg)
        return Param(where, kind, FloatDistribution(low, high), bounds=(low, high))
    if kind == "q_uniform":
        low, high = _range(where, cfg)
        ints = all(isinstance(v, int) for v in (low, high, q))
        dist = IntDistribution(low, high, step=q) if ints else FloatDistribution(low, high, step=q)
        return Param(where, kind, dist, bounds=(low, high))
    if kind in ("log_uniform", "q_log_uniform"):  # bounds are natural logs
        low, high = (math.exp(v) for v in _range(where, cfg))
    elif kind == "inv_log_uniform":  # X = exp(-U(min, max))
        low, high = (math.exp(-v) for v in reversed(_range(where, cfg)))
    elif kind in ("log_uniform_values", "q_log_uniform_values", "inv_log_uniform_values"):
        low, high = _range(where, cfg, positive=True)
    else:
        return _normal_param(where, kind, cfg)
    decode = partial(_quantize, q) if kind.startswith("q_") else None
    return Param(where, kind, FloatDistribution(low, high, log=True), decode, True, (low, high))


def _normal_param(where: str, kind: str, cfg: dict) -> Param:
    """Normal families through the quantile of a uniform sample, which every sampler can draw."""
    if kind not in ("normal", "q_normal", "log_normal", "q_log_normal"):
        raise RecipeError(
            f"{where}.distribution: unknown or unsupported {kind!r}; use one of "
            f"{', '.join(sorted(DISTRIBUTIONS))}"
        )
    log, q = "log" in kind, cfg.get("q", 1.0) if kind.startswith("q_") else None
    decode = partial(_normal, cfg.get("mu", 0.0), cfg.get("sigma", 1.0), log, q)
    return Param(where, kind, FloatDistribution(EPS, 1 - EPS), decode, log)


DISTRIBUTIONS = {
    "categorical",
    "constant",
    "int_uniform",
    "uniform",
    "q_uniform",
    "log_uniform",
    "q_log_uniform",
    "log_uniform_values",
    "q_log_uniform_values",
    "inv_log_uniform",
    "inv_log_uniform_values",
    "normal",
    "q_normal",
    "log_normal",
    "q_log_normal",
}


def infer_kind(where: str, cfg: dict) -> str:
    """W&B's rules: `value` is a constant, `values` a categorical, int min/max an int_uniform."""
    if not isinstance(cfg, dict):
        raise RecipeError(f"{where}: expected a mapping such as {{values: [...]}} or {{value: x}}")
    if "distribution" in cfg:
        kind = cfg["distribution"]
        if kind not in DISTRIBUTIONS:
            close = difflib.get_close_matches(str(kind), DISTRIBUTIONS, n=1)
            hint = (
                f"did you mean {close[0]}?"
                if close
                else f"use one of {', '.join(sorted(DISTRIBUTIONS))}"
            )
            raise RecipeError(f"{where}.distribution: unknown {kind!r}; {hint}")
        return kind
    if "value" in cfg:
        return "constant"
    if "values" in cfg:
        return "categorical"
    low, high = _floats(where, cfg, "min", "max")
    return "int_uniform" if isinstance(low, int) and isinstance(high, int) else "uniform"


def grid_choices(where: str, param: Param) -> Param:
    """A grid walks discrete values only: int_uniform and q_uniform enumerated as W&B does."""
    dist = param.distribution
    if param.kind not in GRID_KINDS:
        raise RecipeError(
            f"{where}: grid search cannot walk the continuous {param.kind}; "
            "list values: [...] or use method: random"
        )
    if isinstance(dist, CategoricalDistribution):
        return param
    low, high = param.bounds
    if param.kind == "int_uniform":  # W&B: range(min, max + 1)
        values = list(range(low, high + 1))
    else:  # W&B: numpy.arange(min, max, q), max itself left out
        values = np.arange(low, high, dist.step).tolist()
    return dataclasses.replace(param, distribution=CategoricalDistribution(values))


def read_parameters(parameters: Any, method: str, prefix: str = "") -> tuple[list[Param], dict]:
    """Searched parameters and constants; nested ones only inside dict arguments."""
    if not isinstance(parameters, dict) or not parameters:
        raise RecipeError(f"{prefix or 'parameters'}: give a mapping of argument: {{...}}")
    if not prefix:
        try:
            check_keys(list(parameters))
        except RecipeError as err:
            raise RecipeError(f"parameters: {err}") from None
    params, fixed = [], {}
    for name, cfg in parameters.items():
        where = f"{prefix}.{name}" if prefix else name
        if isinstance(cfg, dict) and "parameters" in cfg:
            if prefix or name not in DICT_FIELDS:
                raise RecipeError(
                    f"parameters.{where}: nested parameters only inside "
                    f"{', '.join(sorted(DICT_FIELDS))}"
                )
            inner, inner_fixed = read_parameters(cfg["parameters"], method, where)
            params += inner
            if inner_fixed:
                fixed[name] = inner_fixed
            continue
        kind = infer_kind(f"parameters.{where}", cfg)
        if kind == "constant":
            fixed[name] = cfg["value"]
            continue
        key = f"parameters.{where}"
        if kind == "categorical":
            param = _categorical(key, cfg, method)
        else:
            param = _continuous(key, kind, cfg)
        param = dataclasses.replace(param, name=where)
        params.append(grid_choices(f"parameters.{where}", param) if method == "grid" else param)
    return params, fixed


def edge_values(param: Param) -> list[Any]:
    """Values that exercise a parameter's range when checking it against the config parser."""
    dist = param.distribution
    if isinstance(dist, CategoricalDistribution):
        return list(dist.choices)
    decode = param.decode or (lambda v: v)
    return [decode(dist.low), decode(dist.high)]


def describe(param: Param) -> str:
    dist = param.distribution
    if isinstance(dist, CategoricalDistribution) and param.decode is None:
        return f"{param.name}: {param.kind} {list(dist.choices)}"
    where = f" [{param.bounds[0]:.4g}, {param.bounds[1]:.4g}]" if param.bounds else ""
    return f"{param.name}: {param.kind}{where}{' (log)' if param.log else ''} -> {dist}"


def is_log(param: Param) -> bool:
    """A log range, or listed positive numbers spanning at least a factor of 10."""
    choices = getattr(param.distribution, "choices", ())
    numbers = [c for c in choices if isinstance(c, int | float) and not isinstance(c, bool)]
    wide = (
        len(numbers) == len(choices) > 1 and min(numbers) > 0 and max(numbers) >= 10 * min(numbers)
    )
    return param.log or wide

"""A sweep file's parameters: each W&B distribution as the Optuna distribution that samples it."""

from __future__ import annotations

import dataclasses
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
from recipes.search.schema import kind_of

GRID_KINDS = ("categorical", "int_uniform", "q_uniform")


UNIT = (1e-6, 1 - 1e-6)  # keeps the normal quantile finite: about +-4.75 sigma


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
    q: float | None = None  # a q_uniform's quantum, which a grid walks


def _quantize(q: float, value: float) -> float:
    """W&B's `round(value / q) * q`, an int when q is an int."""
    rounded = float(np.round(value / q) * q)
    return int(rounded) if isinstance(q, int) else rounded


def _quantile(ppf: Callable[[float], float], q: float | None, u: float) -> float:
    """A value from a uniform sample through the distribution's quantile, then W&B's rounding."""
    value = float(ppf(u))
    return _quantize(q, value) if q else value


def _normal_ppf(mu: float, sigma: float, log: bool, u: float) -> float:
    value = NormalDist(mu, sigma).inv_cdf(u)
    return math.exp(value) if log else value


def _beta_ppf(a: float, b: float, u: float) -> float:
    from scipy.stats import beta

    return beta.ppf(u, a, b)


def _pick(values: list, cumulative: list[float], u: float) -> Any:
    return values[min(sum(u >= c for c in cumulative), len(values) - 1)]


def _categorical(where: str, cfg: dict, method: str) -> Param:
    values = cfg["values"]
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
    cumulative = list(itertools.accumulate(probs))
    decode = partial(_pick, values, cumulative)
    return Param(where, "categorical_w_probabilities", FloatDistribution(0.0, 1.0), decode)


def _continuous(where: str, kind: str, cfg: dict) -> Param:
    """Each W&B distribution as the Optuna distribution that samples it (W&B's formulas)."""
    q = cfg.get("q", 1.0) if kind.startswith("q_") else None
    low, high = cfg.get("min"), cfg.get("max")
    if kind == "int_uniform":
        return Param(where, kind, IntDistribution(low, high), bounds=(low, high))
    if kind in ("uniform", "q_uniform"):
        decode = partial(_quantize, q) if q else None
        return Param(where, kind, FloatDistribution(low, high), decode, bounds=(low, high), q=q)
    if kind in ("log_uniform", "q_log_uniform"):  # bounds are natural logs
        low, high = math.exp(low), math.exp(high)
    elif kind == "inv_log_uniform":  # X = exp(-U(min, max))
        low, high = math.exp(-high), math.exp(-low)
    elif not kind.endswith("_values"):
        return _quantile_param(where, kind, cfg, q)
    decode = partial(_quantize, q) if q else None
    return Param(where, kind, FloatDistribution(low, high, log=True), decode, True, (low, high))


def _quantile_param(where: str, kind: str, cfg: dict, q: float | None) -> Param:
    """Normal and beta families through the quantile of a uniform sample, which every sampler
    can draw (the normal's tails cut at about 4.75 sigma)."""
    if "beta" in kind:
        ppf, unit = partial(_beta_ppf, cfg.get("a", 1.0), cfg.get("b", 1.0)), (0.0, 1.0)
    else:
        log = "log" in kind
        ppf, unit = partial(_normal_ppf, cfg.get("mu", 0.0), cfg.get("sigma", 1.0), log), UNIT
    decode = partial(_quantile, ppf, q)
    return Param(where, kind, FloatDistribution(*unit), decode, kind.endswith("log_normal"))


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
        values = np.arange(low, high, param.q).tolist()
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
        kind = kind_of(f"parameters.{where}", cfg)
        if kind == "constant":
            fixed[name] = cfg["value"]
            continue
        key = f"parameters.{where}"
        if kind.startswith("categorical"):
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

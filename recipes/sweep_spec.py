"""W&B sweep files read into Optuna search spaces, checked before any trial, and refined."""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import json
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from statistics import NormalDist
from typing import Any

import yaml
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from recipes.config import ARGUMENT_CLASSES, RecipeConfig, check_keys, parse_config
from recipes.errors import RecipeError

METHODS = ("grid", "random", "bayes")
TOP_KEYS = {
    "program",
    "command",
    "method",
    "metric",
    "parameters",
    "early_terminate",
    "run_cap",
    "name",
    "description",
    "project",
    "entity",
    "controller",
    "refine",
}
# What the engine logs each epoch (wandb keys too); EMA metrics exist only with ema_decay.
REPORTED_METRICS = (
    "val_accuracy",
    "val_loss",
    "train_accuracy",
    "train_loss",
    "ema_val_accuracy",
    "ema_val_loss",
)
REFINE_KEYS = {"top_k", "num_epochs", "run_cap", "method", "early_terminate"}
DEFAULT_COMMAND = ["${env}", "${interpreter}", "${program}", "${args}"]
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


@dataclass
class SweepSpec:
    """A checked sweep file: the search, the fixed values and how trials are launched."""

    raw: dict
    name: str
    method: str
    metric: str
    goal: str
    params: list[Param]
    fixed: dict[str, Any]
    run_cap: int | None
    hyperband: dict | None
    recipe: str | None = None
    base_args: list[str] = field(default_factory=list)
    target: float | None = None

    @property
    def direction(self) -> str:
        return "maximize" if self.goal == "maximize" else "minimize"

    def grid(self) -> dict[str, list]:
        return {p.name: list(p.distribution.choices) for p in self.params}

    def grid_size(self) -> int:
        return math.prod(len(choices) for choices in self.grid().values())


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
    if probs is None or method == "grid":
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
    """A grid walks discrete values only: int_uniform and q_uniform are enumerated."""
    dist = param.distribution
    if param.kind not in GRID_KINDS:
        raise RecipeError(
            f"{where}: grid search cannot walk the continuous {param.kind}; "
            "list values: [...] or use method: random"
        )
    if isinstance(dist, CategoricalDistribution):
        return param
    step = dist.step or 1
    count = int(round((dist.high - dist.low) / step)) + 1
    values = [_quantize(step, dist.low + i * step) for i in range(count)]
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


def nest(values: dict[str, Any]) -> dict[str, Any]:
    """{"scheduler_kwargs.num_cycles": 2} -> {"scheduler_kwargs": {"num_cycles": 2}}."""
    out: dict[str, Any] = {}
    for name, value in values.items():
        if "." in name:
            top, key = name.split(".", 1)
            out.setdefault(top, {})[key] = value
        else:
            out[name] = dict(value) if isinstance(value, dict) else value
    return out


def agent_args(values: dict[str, Any]) -> list[str]:
    """`--key=value` exactly as `wandb agent` formats `${args}`."""
    return [f"--{name}={value}" for name, value in values.items()]


def command_args(command: list | None) -> tuple[str | None, list[str]]:
    """The recipe file and fixed arguments that the sweep's `command` gives `recipes train`."""
    tokens = [str(t) for t in command or [] if not str(t).startswith("${")]
    if "train" not in tokens:
        return None, []
    rest = tokens[tokens.index("train") + 1 :]
    if rest and not rest[0].startswith("-"):
        return rest[0], rest[1:]
    return None, rest


def read_hyperband(raw: dict) -> dict | None:
    """early_terminate hyperband -> Optuna HyperbandPruner arguments (iteration = epoch)."""
    stop = raw.get("early_terminate")
    if stop is None:
        return None
    if not isinstance(stop, dict) or stop.get("type") != "hyperband":
        raise RecipeError("early_terminate.type: only hyperband is supported")
    eta = stop.get("eta", 3)
    if not isinstance(eta, int | float) or eta <= 1:
        raise RecipeError(f"early_terminate.eta: must be above 1, got {eta!r}")
    if "min_iter" in stop:
        low = stop["min_iter"]
        high = low * eta ** stop["s"] if "s" in stop else "auto"
    elif "max_iter" in stop and "s" in stop:
        high = stop["max_iter"]
        low = max(1, round(high / eta ** stop["s"]))
    else:
        raise RecipeError("early_terminate: hyperband needs min_iter, or max_iter and s")
    if not isinstance(low, int) or low < 1:
        raise RecipeError(
            f"early_terminate.min_iter: must be an integer of at least 1, got {low!r}"
        )
    return {"min_resource": low, "max_resource": high, "reduction_factor": round(eta)}


def read_metric(raw: dict) -> tuple[str, str, float | None]:
    metric = raw.get("metric") or {}
    name, goal = metric.get("name"), metric.get("goal", "minimize")
    if name not in REPORTED_METRICS:
        raise RecipeError(
            f"metric.name: training never reports {name!r}; "
            f"use one of {', '.join(REPORTED_METRICS)}"
        )
    if goal not in ("minimize", "maximize"):
        raise RecipeError(f"metric.goal: {goal!r} is neither minimize nor maximize")
    return name, goal, metric.get("target")


def load_sweep(path: str | Path) -> SweepSpec:
    """Read and check a W&B sweep file; every problem is one line naming the key."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"sweep file not found: {path}; see recipes/configs/sweeps/ for examples")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError:
        raise RecipeError(f"sweep file {path} is not valid YAML: fix the file") from None
    if not isinstance(raw, dict):
        raise RecipeError(f"sweep file {path} must be a mapping (method, metric, parameters)")
    try:
        return build_spec(raw, path.stem)
    except RecipeError as err:
        raise RecipeError(f"{path}: {err}") from None


def build_spec(raw: dict, default_name: str) -> SweepSpec:
    """Check a sweep mapping and build what the local engine needs from it."""
    for key in raw:
        if key not in TOP_KEYS:
            close = difflib.get_close_matches(str(key), TOP_KEYS, n=1)
            raise RecipeError(
                f"{key}: not a sweep key" + (f"; did you mean {close[0]}?" if close else "")
            )
    method = raw.get("method")
    if method not in METHODS:
        raise RecipeError(f"method: unknown {method!r}; use grid, random or bayes")
    metric, goal, target = read_metric(raw)
    params, fixed = read_parameters(raw.get("parameters"), method)
    recipe, base_args = command_args(raw.get("command"))
    run_cap = raw.get("run_cap")
    if run_cap is not None and (not isinstance(run_cap, int) or run_cap < 1):
        raise RecipeError(f"run_cap: must be a positive integer, got {run_cap!r}")
    if "refine" in raw:
        unknown = set(raw["refine"] or {}) - REFINE_KEYS
        if unknown:
            valid = ", ".join(sorted(REFINE_KEYS))
            raise RecipeError(f"refine.{sorted(unknown)[0]}: not a refine key; use {valid}")
    spec = SweepSpec(
        raw,
        str(raw.get("name") or default_name),
        method,
        metric,
        goal,
        params,
        fixed,
        run_cap,
        read_hyperband(raw),
        recipe,
        base_args,
        target,
    )
    probe = check_values(spec)
    if metric.startswith("ema_") and not probe.training.ema_decay:
        raise RecipeError(f"metric.name: {metric} is reported only with ema_decay set")
    searched = {p.name for p in params}
    if spec.hyperband and spec.hyperband["max_resource"] == "auto" and "num_epochs" not in searched:
        spec.hyperband["max_resource"] = (
            probe.training.num_epochs
        )  # the last rung is the last epoch
    return spec


def trial_args(spec: SweepSpec, values: dict[str, Any]) -> list[str]:
    """A trial's command line after the recipe: fixed arguments, then the sweep's values."""
    return [*spec.base_args, *agent_args(nest({**spec.fixed, **values}))]


def edge_values(param: Param) -> list[Any]:
    """Values that exercise a parameter's range when checking it against the config parser."""
    dist = param.distribution
    if isinstance(dist, CategoricalDistribution):
        return list(dist.choices)
    decode = param.decode or (lambda v: v)
    return [decode(dist.low), decode(dist.high)]


def check_values(spec: SweepSpec) -> RecipeConfig:
    """Parse every listed value and both ends of each range, so a bad one fails before training."""
    base = {p.name: edge_values(p)[0] for p in spec.params}
    probe = parse_config(spec.recipe, trial_args(spec, base))
    for param in spec.params:
        for value in edge_values(param)[1:]:
            try:
                parse_config(spec.recipe, trial_args(spec, {**base, param.name: value}))
            except RecipeError as err:
                raise RecipeError(f"parameters.{param.name}: value {value!r}: {err}") from None
    return probe


def grid_points(spec: SweepSpec) -> list[dict[str, Any]]:
    grid = spec.grid()
    return [dict(zip(grid, combo, strict=True)) for combo in itertools.product(*grid.values())]


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


def agent_command(raw: dict, values: dict[str, Any]) -> list[str]:
    """The command line `wandb agent` builds from `command` / `program` for one run's values."""
    values = nest(values)
    macros = {
        "env": ["/usr/bin/env"],
        "interpreter": ["python"],
        "program": [str(raw.get("program", ""))],
        "args": agent_args(values),
        "args_no_hyphens": [f"{k}={v}" for k, v in values.items()],
        "args_no_boolean_flags": [
            f"--{k}" if v is True else f"--{k}={v}" for k, v in values.items() if v is not False
        ],
        "args_json": [json.dumps(values)],
    }
    command: list[str] = []
    for token in map(str, raw.get("command") or DEFAULT_COMMAND):
        token = re.sub(r"\$\{envvar:([A-Z0-9_]*)\}", lambda m: os.environ.get(m[1], m[1]), token)
        is_macro = token.startswith("${") and token.endswith("}")
        command += macros.get(token[2:-1], []) if is_macro else [token]
    return command

"""W&B's sweep schema (wandb/sweeps `config/schema.json`) as checks: what W&B refuses, we refuse.

Each problem is one line naming the key. Two extension keys are ours (`refine`,
`optuna_hyperband`); W&B warns about them and ignores them.
"""

from __future__ import annotations

import difflib
import math
import re
import warnings
from typing import Any

from recipes.core.errors import RecipeError, RecipeWarning

EXTENSIONS = {"refine", "optuna_hyperband"}
STRINGS = ("apiVersion", "description", "program", "job", "image_uri", "entity", "project", "name")
TOP_KEYS = {*STRINGS, "kind", "controller", "method", "command", "run_cap", "metric", "metrics",
            "scheduler", "early_terminate", "parameters", *EXTENSIONS}  # fmt: skip
METHODS = ("grid", "random", "bayes")  # and custom, which needs W&B Launch
METRIC_ENUMS = {
    "goal": ("minimize", "maximize"),
    "impute": ("latest", "best", "worst"),
    "impute_while_running": ("latest", "best", "worst", "false"),
}
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")

# Each distribution's keys beside `distribution`, and the ones it cannot do without.
RANGE, Q, NORMAL, BETA = ("min", "max"), ("q",), ("mu", "sigma"), ("a", "b")
SHAPES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "constant": (("value",), ("value",)),
    "categorical": (("values",), ("values",)),
    "categorical_w_probabilities": (("values", "probabilities"), ("values", "probabilities")),
    "int_uniform": (RANGE, RANGE),
    "uniform": (RANGE, RANGE),
    "q_uniform": (RANGE + Q, RANGE),
    "log_uniform": (RANGE, RANGE),
    "log_uniform_values": (RANGE, RANGE),
    "q_log_uniform": (RANGE + Q, RANGE),
    "q_log_uniform_values": (RANGE + Q, RANGE),
    "inv_log_uniform": (RANGE, RANGE),
    "inv_log_uniform_values": (RANGE, RANGE),
    "normal": (NORMAL, ()),
    "q_normal": (NORMAL + Q, ()),
    "log_normal": (NORMAL, ()),
    "q_log_normal": (NORMAL + Q, ()),
    "beta": (BETA, ()),
    "q_beta": (BETA + Q, ()),
}
# Distributions W&B reads without a `distribution` key (the schema's defaults).
IMPLIED = ("constant", "categorical", "categorical_w_probabilities", "int_uniform", "uniform")
DEPRECATED = {  # min/max are natural-log exponents
    "log_uniform": "log_uniform_values",
    "q_log_uniform": "q_log_uniform_values",
    "inv_log_uniform": "inv_log_uniform_values",
}
# key: (lowest value, whether that value itself is refused)
LIMITS = {"q": (0, True), "sigma": (0, False), "a": (0, False), "b": (0, False)}


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_sweep(raw: dict) -> None:
    """Refuse, before any trial, what W&B's schema refuses; warn where W&B warns."""
    for key in raw:
        if key not in TOP_KEYS:
            close = difflib.get_close_matches(str(key), TOP_KEYS, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise RecipeError(f"{key}: not a sweep key (W&B's schema refuses it){hint}")
    if "method" not in raw:
        raise RecipeError("method: required; use grid, random or bayes")
    for key in STRINGS:
        if key in raw and not isinstance(raw[key], str):
            raise RecipeError(f"{key}: must be a string, got {raw[key]!r}")
    if raw["method"] != "custom":
        check_enum("method", raw["method"], METHODS)
    if "kind" in raw:
        check_enum("kind", raw["kind"], ("sweep",))
    if "command" in raw and not isinstance(raw["command"], list):
        raise RecipeError("command: must be a list, e.g. [${env}, ${interpreter}, ...]")
    run_cap = raw.get("run_cap", 1)
    if not isinstance(run_cap, int) or isinstance(run_cap, bool) or run_cap < 1:
        raise RecipeError(f"run_cap: must be a positive integer, got {run_cap!r}")
    check_controller(raw)
    if "metric" in raw:
        check_metric("metric", raw["metric"])
    if "metrics" in raw or "scheduler" in raw or raw["method"] == "custom":
        raise RecipeError(
            "method custom, metrics and scheduler run a custom scheduler on W&B Launch, which "
            "has no local engine; use method grid, random or bayes with one metric"
        )
    if "parameters" not in raw:
        raise RecipeError("parameters: required (a mapping of argument: {values: [...]})")
    check_parameters("parameters", raw["parameters"])


def check_enum(where: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise RecipeError(f"{where}: unknown {value!r}; use one of {', '.join(choices)}")


def check_controller(raw: dict) -> None:
    controller = raw.get("controller", {"type": "cloud"})
    if not isinstance(controller, dict) or "type" not in controller:
        raise RecipeError("controller: a mapping with type: local or cloud")
    check_enum("controller.type", controller["type"], ("local", "cloud"))


def check_metric(where: str, metric: Any) -> None:
    """name (required), goal, target, impute, impute_while_running; nothing else."""
    if not isinstance(metric, dict) or not isinstance(metric.get("name"), str):
        raise RecipeError(f"{where}: a mapping with name: (the logged metric) and goal:")
    for key, value in metric.items():
        if key in METRIC_ENUMS:
            check_enum(f"{where}.{key}", value, METRIC_ENUMS[key])
        elif key == "target" and not is_number(value):
            raise RecipeError(f"{where}.target: must be a number, got {value!r}")
        elif key not in ("name", "target"):
            valid = ", ".join(["name", "target", *METRIC_ENUMS])
            raise RecipeError(f"{where}.{key}: not a metric key; use {valid}")


def check_parameters(where: str, parameters: Any) -> None:
    """Each parameter matches one of the schema's parameter shapes; dicts nest."""
    if not isinstance(parameters, dict) or not parameters:
        raise RecipeError(f"{where}: a non-empty mapping of argument: {{values: [...]}}")
    for name, cfg in parameters.items():
        if not NAME.match(str(name)):
            raise RecipeError(f"{where}.{name}: a name must match {NAME.pattern}")
        key = f"{where}.{name}"
        if isinstance(cfg, dict) and "parameters" in cfg:
            if set(cfg) != {"parameters"}:
                raise RecipeError(f"{key}: nested parameters take no other key beside parameters")
            check_parameters(f"{key}.parameters", cfg["parameters"])
        else:
            check_parameter(key, cfg)


def kind_of(where: str, cfg: dict) -> str:
    """The distribution W&B's schema matches: explicit, or implied by the keys present."""
    if "distribution" in cfg:
        kind = cfg["distribution"]
        if kind not in SHAPES:
            close = difflib.get_close_matches(str(kind), SHAPES, n=1)
            hint = f"did you mean {close[0]}?" if close else f"use one of {', '.join(SHAPES)}"
            raise RecipeError(f"{where}.distribution: unknown {kind!r}; {hint}")
        return kind
    if "value" in cfg:
        return "constant"
    if "values" in cfg:
        return "categorical_w_probabilities" if "probabilities" in cfg else "categorical"
    ints = all(isinstance(cfg.get(k), int) and not isinstance(cfg[k], bool) for k in RANGE)
    return "int_uniform" if ints else "uniform"


def check_parameter(where: str, cfg: Any) -> None:
    """One parameter: its keys, their types and limits, as the schema states them."""
    if not isinstance(cfg, dict):
        raise RecipeError(f"{where}: expected a mapping such as {{values: [...]}} or {{value: x}}")
    kind = kind_of(where, cfg)
    allowed, required = SHAPES[kind]
    if "distribution" not in cfg and kind not in IMPLIED:
        raise RecipeError(f"{where}: {kind} needs distribution: {kind}")
    for key in cfg:
        if key != "distribution" and key not in allowed:
            raise RecipeError(f"{where}.{key}: {kind} takes only {', '.join(allowed)}")
    missing = [k for k in required if k not in cfg]
    if missing:
        raise RecipeError(f"{where}: {kind} needs {' and '.join(missing)}")
    check_numbers(where, kind, cfg)
    if "values" in cfg:
        check_values(where, cfg)
    if kind in DEPRECATED:
        warnings.warn(
            f"{where} uses {kind}, where min/max specify base-e exponents. "
            f"Use {DEPRECATED[kind]} to specify limit values.",
            RecipeWarning,
            stacklevel=2,
        )


def check_numbers(where: str, kind: str, cfg: dict) -> None:
    """Numeric keys: numbers, integers for int_uniform, above their limits, min below max."""
    for key in ("min", "max", "q", "mu", "sigma", "a", "b"):
        if key not in cfg:
            continue
        value = cfg[key]
        if not is_number(value) or (kind == "int_uniform" and not isinstance(value, int)):
            wanted = "an integer" if kind == "int_uniform" else "a number"
            raise RecipeError(f"{where}.{key}: must be {wanted}, got {value!r}")
        low, strict = LIMITS.get(key, (-math.inf, False))
        if value < low or (strict and value == low):
            raise RecipeError(f"{where}.{key}: must be {'above' if strict else 'at least'} {low}")
    if kind.endswith("_values") and "min" in cfg and cfg["min"] <= 0:
        raise RecipeError(f"{where}.min: {kind} needs min above 0, got {cfg['min']}")
    if "min" in cfg and "max" in cfg and cfg["min"] >= cfg["max"]:
        raise RecipeError(f"{where}: min {cfg['min']} is not less than max {cfg['max']}")


def check_values(where: str, cfg: dict) -> None:
    values, probabilities = cfg["values"], cfg.get("probabilities")
    if not isinstance(values, list) or not values:
        raise RecipeError(f"{where}.values: give a non-empty list")
    if probabilities is None:
        return
    if not isinstance(probabilities, list) or not all(
        is_number(p) and p >= 0 for p in probabilities
    ):
        raise RecipeError(f"{where}.probabilities: a list of numbers at least 0")
    if len(probabilities) != len(values):
        raise RecipeError(
            f"{where}: values {values} and probabilities {probabilities} are not the same length"
        )
    if not math.isclose(sum(probabilities), 1.0, rel_tol=1e-5, abs_tol=1e-8):
        raise RecipeError(f"{where}.probabilities: {probabilities} do not sum to 1")

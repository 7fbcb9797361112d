"""A W&B sweep file read and checked before any trial: method, metric, hyperband, parameters."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from recipes.core.config import RecipeConfig, parse_config
from recipes.core.errors import RecipeError
from recipes.search.agent import agent_args, args_macro, command_args, nest
from recipes.search.hyperband import HyperbandRule, read_rule
from recipes.search.params import Param, edge_values, read_parameters
from recipes.search.schema import check_sweep

# What the engine logs each epoch (wandb keys too); EMA metrics exist only with ema_decay.
REPORTED_METRICS = (
    "val_accuracy",
    "val_loss",
    "train_accuracy",
    "train_loss",
    "ema_val_accuracy",
    "ema_val_loss",
)
REFINE_KEYS = {"top_k", "num_epochs", "run_cap", "method", "early_terminate", "max_train_samples"}


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
    hyperband: HyperbandRule | None
    recipe: str | None = None
    base_args: list[str] = field(default_factory=list)
    target: float | None = None
    optuna_hyperband: dict | None = None
    macro: str = "args"  # the command's argument macro, which formats a trial's values

    @property
    def direction(self) -> str:
        return "maximize" if self.goal == "maximize" else "minimize"

    def grid(self) -> dict[str, list]:
        return {p.name: list(p.distribution.choices) for p in self.params}

    def grid_size(self) -> int:
        return math.prod(len(choices) for choices in self.grid().values())


def read_hyperband(raw: dict) -> HyperbandRule | None:
    """early_terminate: hyperband -> W&B's stopping rule (iteration = epoch)."""
    stop = raw.get("early_terminate")
    if stop is None:
        return None
    if not isinstance(stop, dict) or stop.get("type") != "hyperband":
        raise RecipeError("early_terminate.type: only hyperband is supported")
    return read_rule(stop)


def read_optuna_hyperband(raw: dict) -> dict | None:
    """The extension key optuna_hyperband: Optuna's multi-bracket HyperbandPruner arguments."""
    own = raw.get("optuna_hyperband")
    if own is None:
        return None
    if "early_terminate" in raw:
        raise RecipeError("optuna_hyperband: use it or early_terminate (W&B's rule), not both")
    valid = {"min_resource", "max_resource", "reduction_factor"}
    if not isinstance(own, dict) or set(own) - valid:
        raise RecipeError(f"optuna_hyperband: a mapping of {', '.join(sorted(valid))}")
    return {"min_resource": 1, "max_resource": "auto", "reduction_factor": 3, **own}


def read_metric(raw: dict) -> tuple[str, str, float | None]:
    """The metric to rank by; W&B needs one for bayes and hyperband only, so grid and random
    without one rank by validation accuracy here (W&B ranks nothing then)."""
    if "metric" not in raw and raw["method"] != "bayes" and "early_terminate" not in raw:
        return "val_accuracy", "maximize", None
    if "metric" not in raw:
        needs = "bayes" if raw["method"] == "bayes" else "early_terminate"
        raise RecipeError(f"metric: {needs} needs a metric to optimise, e.g. name: val_loss")
    metric = raw["metric"]
    name, goal = metric["name"], metric.get("goal", "minimize")
    if name not in REPORTED_METRICS:
        raise RecipeError(
            f"metric.name: training never reports {name!r}; "
            f"use one of {', '.join(REPORTED_METRICS)}"
        )
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
    check_sweep(raw)
    method = raw["method"]
    metric, goal, target = read_metric(raw)
    params, fixed = read_parameters(raw.get("parameters"), method)
    recipe, base_args = command_args(raw.get("command"))
    run_cap = raw.get("run_cap")
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
        read_optuna_hyperband(raw),
        args_macro(raw.get("command")),
    )
    probe = check_values(spec)
    if metric.startswith("ema_") and not probe.training.ema_decay:
        raise RecipeError(f"metric.name: {metric} is reported only with ema_decay set")
    searched = {p.name for p in params}
    own = spec.optuna_hyperband
    by_epochs = not searched & {"num_epochs", "max_steps"} and not probe.training.max_steps
    if own and own["max_resource"] == "auto" and by_epochs:
        own["max_resource"] = probe.training.num_epochs  # the last rung is the last epoch
    # else Optuna's own "auto": the last epoch of the first trial to finish
    return spec


def trial_args(spec: SweepSpec, values: dict[str, Any]) -> list[str]:
    """A trial's command line after the recipe: fixed arguments, then the sweep's values."""
    return [*spec.base_args, *agent_args({**spec.fixed, **values}, spec.macro)]


def check_values(spec: SweepSpec) -> RecipeConfig:
    """Parse every listed value and both ends of each range, so a bad one fails before training."""
    base = {p.name: edge_values(p)[0] for p in spec.params}
    probe = parse_trial(spec, base)
    for param in spec.params:
        for value in edge_values(param)[1:]:
            try:
                parse_trial(spec, {**base, param.name: value})
            except RecipeError as err:
                raise RecipeError(f"parameters.{param.name}: value {value!r}: {err}") from None
    return probe


def parse_trial(spec: SweepSpec, values: dict[str, Any]) -> RecipeConfig:
    """A trial's config, parsed from its command line, holding exactly the sweep's values."""
    config = parse_config(spec.recipe, trial_args(spec, values))
    got = config.to_dict()
    for name, value in nest({**spec.fixed, **values}).items():
        if not same(got[name], value):
            raise RecipeError(
                f"${{{spec.macro}}} brings {name}={value!r} to recipes train as {got[name]!r}; "
                "use ${args}"
            )
    return config


def same(got: Any, wanted: Any) -> bool:
    """Equal as parsed values: numbers within rounding, mappings and lists item by item."""
    if isinstance(wanted, dict):
        return isinstance(got, dict) and got.keys() == wanted.keys() and all(
            same(got[k], v) for k, v in wanted.items()
        )  # fmt: skip
    if isinstance(wanted, list | tuple):
        return isinstance(got, list | tuple) and len(got) == len(wanted) and all(
            same(g, w) for g, w in zip(got, wanted, strict=True)
        )  # fmt: skip
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (got, wanted))
    return math.isclose(got, wanted, rel_tol=1e-9) if numbers else got == wanted


def grid_points(spec: SweepSpec) -> list[dict[str, Any]]:
    """Every grid point in W&B's order: parameters sorted by name at each nesting level (so
    nested ones sit where their parent sorts), the product varying the last one fastest."""
    grid = spec.grid()
    names = sorted(grid, key=lambda name: tuple(name.split(".")))
    combos = itertools.product(*(grid[name] for name in names))
    return [dict(zip(names, combo, strict=True)) for combo in combos]

"""A recipe: the three argument dataclasses together, from YAML, then command-line overrides."""

from __future__ import annotations

import ast
import dataclasses
import difflib
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from transformers import HfArgumentParser

from recipes.core.arguments import (
    DataArguments,
    ModelArguments,
    TrainingArguments,
    check_choice,
)
from recipes.core.errors import RecipeError, argument_error
from recipes.core.files import write_atomic

DIGITS_RECIPES = Path(__file__).parents[1] / "configs" / "digits"


@dataclass
class RecipeConfig:
    """Everything one training run needs; `asdict` of it is what gets saved and tracked."""

    data: DataArguments = field(default_factory=DataArguments)
    model: ModelArguments = field(default_factory=ModelArguments)
    training: TrainingArguments = field(default_factory=TrainingArguments)

    def __post_init__(self) -> None:
        check_names(self)
        check_choice("mode", self.model.mode, ("scratch", "linear_probe", "finetune"))
        if self.model.mode != "scratch" and not (self.model.pretrained or self.model.checkpoint):
            raise RecipeError(
                f"mode {self.model.mode} needs weights: set pretrained: true or checkpoint: PATH"
            )

        check_time_limit(self)

    def to_dict(self) -> dict[str, Any]:
        """Flat key -> value mapping, the same names the command line and sweeps use."""
        flat: dict[str, Any] = {}
        for part in (self.data, self.model, self.training):
            flat.update(dataclasses.asdict(part))
        return flat

    def replace(self, **values: Any) -> RecipeConfig:
        """A copy with some flat fields changed (the names the command line uses), checked again."""
        check_keys(list(values))
        parts = {}
        for name in ("data", "model", "training"):
            part = getattr(self, name)
            mine = {k: v for k, v in values.items() if hasattr(part, k)}
            parts[name] = dataclasses.replace(part, **mine)
        return RecipeConfig(**parts)

    def save(self, path: Path) -> None:
        write_atomic(path, yaml.safe_dump(self.to_dict(), sort_keys=False))


ARGUMENT_CLASSES = (DataArguments, ModelArguments, TrainingArguments)
FIELD_NAMES = sorted(f.name for cls in ARGUMENT_CLASSES for f in dataclasses.fields(cls))
DEFAULTS = {f.name: f.default for cls in ARGUMENT_CLASSES for f in dataclasses.fields(cls)}


def route_of(config: RecipeConfig) -> str:
    """The route a (resolved) recipe takes (see recipes.training.ROUTES)."""
    m = config.model
    if config.training.parallel in ("pipeline", "tensor"):
        return config.training.parallel
    if m.mode == "linear_probe" and m.cached_features:
        return "cached_probe"
    if m.mode == "finetune" and m.probe_epochs:
        return "probe_finetune"
    return "engine"


def check_time_limit(config: RecipeConfig) -> None:
    """max_seconds is kept by the Accelerate loop; the other routes would silently ignore it."""
    route = route_of(config)
    if config.training.max_seconds and route in ("pipeline", "tensor", "cached_probe"):
        where = "cached_features probes" if route == "cached_probe" else f"parallel: {route}"
        raise RecipeError(
            f"max_seconds: {where} does not keep a time limit; drop max_seconds and set "
            "num_epochs or max_steps instead"
        )


def check_names(config: RecipeConfig) -> None:
    """Unknown model, optimizer or scheduler names (or scheduler kwargs) fail here, before work."""
    from recipes.core.models import check_model_name
    from recipes.schedules.optimizers import check_optimizer_name
    from recipes.schedules.registry import check_scheduler_kwargs

    t = config.training
    check_model_name(config.model.model_name)
    check_optimizer_name(t.optimizer)
    check_scheduler_kwargs(t.lr_scheduler, t.scheduler_kwargs, t.num_epochs)


def check_keys(keys: list[str]) -> None:
    """Refuse names that are not training arguments, suggesting the closest valid ones."""
    for key in keys:
        if key not in FIELD_NAMES:
            close = difflib.get_close_matches(key, FIELD_NAMES, n=3, cutoff=0.5)
            hint = (
                f"; did you mean {', '.join(close)}?" if close else "; see `recipes train --help`"
            )
            raise RecipeError(f"unknown argument {key!r}{hint}")


def read_recipe(path: str | Path) -> dict[str, Any]:
    """Read a flat YAML recipe, with one clear error for a missing or malformed file."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"recipe file not found: {path}; see {DIGITS_RECIPES} for examples")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise RecipeError(f"recipe {path} is not valid YAML{where}: fix the file") from None
    if not isinstance(values, dict):
        raise RecipeError(f"recipe {path} must be a mapping of argument: value")
    check_keys(list(values))
    return values


def to_argv(values: dict[str, Any]) -> list[str]:
    """Turn recipe values into `--key value` arguments, so both sources share one parser."""
    argv: list[str] = []
    for key, value in values.items():
        if value is None and DEFAULTS.get(key) is None:
            continue
        if value is None:
            argv += [f"--{key}", "none"]
        elif isinstance(value, dict):
            argv += [f"--{key}", json.dumps(value)]
        elif isinstance(value, list | tuple):
            argv += [f"--{key}", *map(str, value)]
        else:
            argv += [f"--{key}", str(value)]
    return argv


LIST_FIELDS = {
    f.name for c in ARGUMENT_CLASSES for f in dataclasses.fields(c) if "list" in str(f.type)
}


def expand_lists(args: list[str]) -> list[str]:
    """`--classes=[5, 6]` or `--classes "['5', '6']"` (how `wandb agent` passes a list, as a
    Python literal) -> `--classes 5 6`, the form the parser reads."""
    out: list[str] = []
    for arg in args:
        key, _, text = arg.partition("=")
        flag = key if text else (out[-1] if out and not arg.startswith("--") else "")
        if flag[2:] in LIST_FIELDS and (text or arg).startswith("["):
            try:
                items = ast.literal_eval(text or arg)
            except (ValueError, SyntaxError):
                wanted = f"use {flag} a b c"
                raise RecipeError(f"{flag}: not a list: {text or arg!r}; {wanted}") from None
            out += ([flag] if text else []) + [str(item) for item in items]
        else:
            out.append(arg)
    return out


def _unknown_options(rest: list[str]) -> list[str]:
    return [arg[2:].split("=", 1)[0] for arg in rest if arg.startswith("--")]


def _none_strings(obj: Any) -> None:
    """`--checkpoint none` (or YAML null) clears an optional text field."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        if getattr(obj, f.name) in ("none", "None") and type(None) in typing.get_args(
            hints[f.name]
        ):
            setattr(obj, f.name, None)


def build_parser() -> HfArgumentParser:
    """The one argument parser; its errors become one-line `RecipeError`s."""
    parser = HfArgumentParser(ARGUMENT_CLASSES, prog="recipes train", allow_abbrev=False)
    parser.error = argument_error
    return parser


def parse_config(
    recipe: str | Path | None = None, overrides: list[str] | None = None
) -> RecipeConfig:
    """Build the config: defaults in code, then the recipe file, then `--key value` overrides."""
    argv = to_argv(read_recipe(recipe)) if recipe else []
    overrides = expand_lists(list(overrides or []))
    parser = build_parser()
    try:
        data, model, training, rest = parser.parse_args_into_dataclasses(
            args=argv + overrides, return_remaining_strings=True
        )
    except ValueError as err:
        raise RecipeError(str(err)) from None
    check_keys(_unknown_options(rest))
    if rest:
        raise RecipeError(f"unexpected arguments {' '.join(rest)}; use --key value")
    for part in (data, model, training):
        _none_strings(part)
    return RecipeConfig(data=data, model=model, training=training)

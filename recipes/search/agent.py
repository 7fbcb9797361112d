"""The command line `wandb agent` builds for a run, so the same sweep file runs on W&B's cloud."""

from __future__ import annotations

import json
import os
import re
from typing import Any

DEFAULT_COMMAND = ["${env}", "${interpreter}", "${program}", "${args}"]


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

"""The command line `wandb agent` builds for a run, so the same sweep file runs on W&B's cloud.

The argument macros come from the `wandb` package's own builder (`create_sweep_command_args`,
`create_sweep_command`); the agent adds `${env}`, `${interpreter}`, `${program}` and
`${args_json_file}` itself, as here.
"""

from __future__ import annotations

import re
from typing import Any

from recipes.core.errors import RecipeError

DEFAULT_COMMAND = ["${env}", "${interpreter}", "${program}", "${args}"]
READABLE = ("args", "args_no_equals", "args_no_boolean_flags")  # what `recipes train` parses
AGENT_MACROS = ("env", "interpreter", "program", "args_json_file")
MACRO = re.compile(r"^\$\{(\w+)\}$")


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


def sweep_vars(values: dict[str, Any]) -> dict[str, Any]:
    """Every argument macro's tokens for one run's (nested) values, from wandb's own builder."""
    from wandb.sdk.launch.sweeps.utils import create_sweep_command_args

    return create_sweep_command_args({"args": {k: {"value": v} for k, v in values.items()}})


def macros(command: list | None) -> list[str]:
    """The `${name}` macros a command uses (`${envvar:NAME}` is expanded, not a macro)."""
    return [m[1] for token in command or DEFAULT_COMMAND if (m := MACRO.match(str(token)))]


def args_macro(command: list | None) -> str:
    """The one argument macro that passes a run's values to `recipes train`; others refused."""
    known = set(sweep_vars({})) | set(AGENT_MACROS)
    used = macros(command)
    for name in used:
        if name not in known:
            raise RecipeError(
                f"command: ${{{name}}} is not a macro wandb agent knows (it would drop it); "
                f"use one of {', '.join(f'${{{k}}}' for k in sorted(known))}"
            )
        if name not in (*READABLE, "env", "interpreter", "program"):
            raise RecipeError(
                f"command: recipes train cannot read what ${{{name}}} passes; use ${{args}}"
            )
    passed = [name for name in used if name in READABLE]
    if len(passed) != 1:
        what = "passes no values" if not passed else "passes the values twice"
        raise RecipeError(f"command: {what} to recipes train; use ${{args}} once")
    return passed[0]


def agent_args(values: dict[str, Any], macro: str = "args") -> list[str]:
    """A run's values as `wandb agent` formats them for the argument macro (default `${args}`)."""
    return sweep_vars(nest(values))[macro]


def command_args(command: list | None) -> tuple[str | None, list[str]]:
    """The recipe file and fixed arguments that the sweep's `command` gives `recipes train`."""
    tokens = [str(t) for t in command or [] if not MACRO.match(str(t))]
    if "train" not in tokens:
        return None, []
    rest = tokens[tokens.index("train") + 1 :]
    if rest and not rest[0].startswith("-"):
        return rest[0], rest[1:]
    return None, rest


def agent_command(raw: dict, values: dict[str, Any], json_file: str = "") -> list[str]:
    """The command line `wandb agent` builds from `command` / `program` for one run's values."""
    from wandb.sdk.launch.sweeps.utils import create_sweep_command

    found = {
        **sweep_vars(nest(values)),
        "env": ["/usr/bin/env"],
        "interpreter": ["python"],
        "program": [str(raw.get("program", ""))],
        "args_json_file": [json_file or "wandb/sweep-ID/config-RUN.json"],
    }
    command: list[str] = []
    given = [str(token) for token in raw.get("command") or []] or None
    for token in map(str, create_sweep_command(given)):
        m = MACRO.match(token)
        command += (found.get(m[1]) or []) if m else [token]
    return command

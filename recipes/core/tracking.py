"""Experiment tracking through accelerate's trackers, wandb offline unless the user logged in."""

from __future__ import annotations

import importlib.util
import netrc
import os
from pathlib import Path

from recipes.core.errors import RecipeError

WANDB_HOST = "api.wandb.ai"


def wandb_logged_in() -> bool:
    """An API key in the environment or in ~/.netrc, the places `wandb login` writes."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators(WANDB_HOST) is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def choose_wandb_mode() -> str:
    """Respect WANDB_MODE; otherwise online only for a logged-in user."""
    if "WANDB_MODE" not in os.environ:
        os.environ["WANDB_MODE"] = "online" if wandb_logged_in() else "offline"
    return os.environ["WANDB_MODE"]


def tracker_setup(report_to: str, run_dir: Path, run_name: str, group: str | None):
    """`log_with` and `init_kwargs` for `Accelerator` / `init_trackers`, and a one-line note."""
    if report_to == "none":
        return [], {}, None
    module = "tensorboard" if report_to == "tensorboard" else "wandb"
    if importlib.util.find_spec(module) is None:
        raise RecipeError(f"report_to {report_to} needs the {module} package: pip install {module}")
    if report_to == "tensorboard":
        return ["tensorboard"], {}, f"tensorboard logs in {run_dir / 'tracking'}"
    mode = choose_wandb_mode()
    kwargs = {"wandb": {"dir": str(run_dir), "name": run_name, "group": group}}
    note = f"wandb {mode}" + (
        f": sync later with `wandb sync {run_dir / 'wandb'}`" if mode == "offline" else ""
    )
    return ["wandb"], kwargs, note

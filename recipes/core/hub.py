"""Fail within seconds, with the fix, when something must come from the Hugging Face hub."""

from __future__ import annotations

import os
import socket

from recipes.core.errors import RecipeError

HUB_HOST = "huggingface.co"


def hub_offline() -> bool:
    """True when the user told the libraries not to reach the hub."""
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on")


def hub_reachable(timeout: float = 3.0) -> bool:
    """One short TCP connection, instead of the libraries' long retry loop."""
    try:
        with socket.create_connection((HUB_HOST, 443), timeout=timeout):
            return True
    except OSError:
        return False


def offline_error(what: str, fix: str) -> RecipeError:
    return RecipeError(f"{what} is not available offline; {fix}")


def require_hub(what: str, fix: str) -> None:
    """Raise a clear error before a download that cannot succeed (offline, or no network)."""
    if not hub_offline() and not hub_reachable():
        raise RecipeError(f"cannot reach {HUB_HOST} to fetch {what}; {fix}")

"""Where recipes keeps what it computes once: decoded images, features, unpacked data files."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """$RECIPES_CACHE, else ~/.cache/recipes."""
    return Path(os.environ.get("RECIPES_CACHE", Path.home() / ".cache" / "recipes"))

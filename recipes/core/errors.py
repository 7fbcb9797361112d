"""The one exception for bad input: the command line prints its message and exits with 2."""

from __future__ import annotations

from typing import NoReturn


class RecipeError(Exception):
    """A problem with what the user asked for, stated in one line with the fix."""


class Interrupted(Exception):
    """Ctrl-C during training: a checkpoint was saved; the command line exits with 130."""


def argument_error(message: str) -> NoReturn:
    """argparse's `error`, as a one-line `RecipeError` like every other bad input."""
    raise RecipeError(message)

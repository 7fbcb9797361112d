"""The one exception for bad input: the command line prints its message and exits with 2."""

from __future__ import annotations

import sys
import warnings
from typing import NoReturn


class RecipeError(Exception):
    """A problem with what the user asked for, stated in one line with the fix."""


class RecipeWarning(UserWarning):
    """Input that works but means something the user may not expect; printed as one line."""


class Interrupted(Exception):
    """Ctrl-C during training: a checkpoint was saved; the command line exits with 130."""


def argument_error(message: str) -> NoReturn:
    """argparse's `error`, as a one-line `RecipeError` like every other bad input."""
    raise RecipeError(message)


def show_recipe_warnings() -> None:
    """Print a `RecipeWarning` as `warning: ...` on stderr; other warnings print as usual."""
    default = warnings.showwarning
    if getattr(default, "recipes", False):
        return

    def show(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
        if issubclass(category, RecipeWarning):
            print(f"warning: {message}", file=sys.stderr)
        else:
            default(message, category, filename, lineno, file, line)

    show.recipes = True
    warnings.showwarning = show

"""The one exception for bad input: the command line prints its message and exits with 2."""

from __future__ import annotations

import argparse
from typing import NoReturn


class RecipeError(Exception):
    """A problem with what the user asked for, stated in one line with the fix."""


def argument_error(message: str) -> NoReturn:
    """argparse's `error`, as a one-line `RecipeError` like every other bad input."""
    raise RecipeError(message)


def command_parser(prog: str, **kwargs) -> argparse.ArgumentParser:
    """A subcommand's parser: no abbreviations, and a bad argument is one line naming --help."""
    parser = argparse.ArgumentParser(prog=prog, allow_abbrev=False, **kwargs)
    command = " ".join(word for word in prog.split() if not word.endswith(".yaml"))

    def error(message: str) -> NoReturn:
        raise RecipeError(f"{message} (see {command} --help)")

    parser.error = error
    return parser

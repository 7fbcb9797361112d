"""What every command shares: a strict parser, and "the recipe file, then overrides"."""

from __future__ import annotations

import argparse
from typing import NoReturn

from recipes.core.errors import RecipeError


def command_parser(prog: str, **kwargs) -> argparse.ArgumentParser:
    """A subcommand's parser: no abbreviations, and a bad argument is one line naming --help."""
    parser = argparse.ArgumentParser(prog=prog, allow_abbrev=False, **kwargs)
    command = " ".join(word for word in prog.split() if not word.endswith(".yaml"))

    def error(message: str) -> NoReturn:
        raise RecipeError(f"{message} (see {command} --help)")

    parser.error = error
    return parser


def positive_int(text: str) -> int:
    """An argparse type for counts: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def split_recipe(argv: list[str]) -> tuple[str | None, list[str]]:
    """`[RECIPE.yaml] [--key value ...]`: the recipe file when one comes first, and the rest."""
    if argv and not argv[0].startswith("-"):
        return argv[0], argv[1:]
    return None, list(argv)


def wants_help(argv: list[str]) -> bool:
    return "-h" in argv or "--help" in argv

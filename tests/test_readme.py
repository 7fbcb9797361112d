"""The README stays true: its commands name real verbs, files and arguments."""

from __future__ import annotations

import re
import shlex

import pytest

from recipes.cli import VERBS, main
from recipes.core.config import FIELD_NAMES
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"```bash\n(.*?)```", README, flags=re.S)
LINES = [line.split("  #")[0].strip() for block in BLOCKS for line in block.splitlines()]
COMMANDS = [shlex.split(line) for line in LINES if line and not line.startswith("#")]
PATH = re.compile(r"^(recipes/configs|accelerate_configs|scripts|tests)/[\w./-]+\.(yaml|py|json)$")


def recipe_calls() -> list[list[str]]:
    """The argument lists after `recipes` or `-m recipes` in every README command."""
    calls = []
    for words in COMMANDS:
        for i, word in enumerate(words):
            if word == "recipes" and (i == 0 or words[i - 1] in ("-m", "&&")):
                calls.append(words[i + 1 :])
    return calls


def test_readme_has_the_two_setup_commands_first() -> None:
    first, second = COMMANDS[0], COMMANDS[1]
    assert "pip" in first and "recipes" in first
    assert "pip" in second and "pytest" in second


@pytest.mark.parametrize("words", recipe_calls(), ids=lambda w: " ".join(w[:3]))
def test_readme_commands_use_real_verbs_and_arguments(words: list[str]) -> None:
    if not words:
        return
    assert words[0] in VERBS, f"README uses unknown verb {words[0]!r}"
    if words[0] == "train":
        keys = [w[2:].split("=")[0] for w in words if w.startswith("--") and w != "--help"]
        assert set(keys) <= set(FIELD_NAMES), keys


def test_every_path_in_the_readme_exists() -> None:
    paths = {w for words in COMMANDS for w in words if PATH.match(w)}
    assert paths, "expected the README to name recipe, config and script files"
    missing = sorted(p for p in paths if not (ROOT / p).exists())
    assert not missing, missing


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_every_verb_has_help(verb: str, capsys) -> None:
    try:
        main([verb, "--help"])
    except SystemExit as exit_info:
        assert exit_info.code == 0
    assert capsys.readouterr().out.strip()


def test_every_figure_in_the_readme_is_committed() -> None:
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", README)
    assert images, "expected the README to show the figures"
    assert not [p for p in images if not (ROOT / p).is_file()]

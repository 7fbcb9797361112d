"""The procedure's budget: wall clock or trials, how it splits between stages, time spent."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from recipes.core.errors import RecipeError
from recipes.core.files import write_atomic

MIN_SECONDS = 60  # a wall-clock budget's floor: the rest is planned from measured times
MIN_TRIALS = 3  # two coarse trials and one refine trial
BEAT_SECONDS = 5.0  # how often a running step's time is written: all of it that a kill loses
CHECKS = "1-3 checks"  # the steps' names, keys of a tune folder's timings.json and plan.json
TIMING = "3b timing run"
COARSE = "4 coarse search"
FINAL = "final model and test"


def refine_step(round_: int) -> str:
    """A refine round's step name, as `Clock` and `Plan` key it."""
    return f"5 refine (round {round_})"


@dataclass
class Budget:
    """`--budget 5m` (wall clock: 90s, 5m, 1h) or `--budget 12` (trials)."""

    text: str
    seconds: float | None = None
    trials: int | None = None

    @classmethod
    def parse(cls, text: str) -> Budget:
        match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(s|m|min|h)?", text.strip())
        if not match:
            raise RecipeError(
                f"--budget {text!r}: use hours (1h), minutes (5m), seconds (300s) or trials (12)"
            )
        value, unit = float(match[1]), match[2]
        if unit is None:
            if not value.is_integer():
                raise RecipeError(
                    f"--budget {text}: trials are counted whole; use --budget {int(value)} for "
                    f"trials, or add a unit ({text}m) for time"
                )
            if value < MIN_TRIALS:
                raise RecipeError(
                    f"--budget {text} is too small: the procedure needs at least {MIN_TRIALS} "
                    "trials (2 coarse, 1 refine)"
                )
            return cls(text, trials=int(value))
        seconds = value * {"s": 1, "m": 60, "min": 60, "h": 3600}[unit]
        if seconds < MIN_SECONDS:
            raise RecipeError(
                f"--budget {text} is too small: the checks, a timed run and the shortest "
                f"search need a minute or more; use --budget {MIN_SECONDS}s or more"
            )
        return cls(text, seconds=seconds)

    def split(self) -> tuple[int, int]:
        """A budget in trials: about 60% of them go to the coarse stage, the rest to refine."""
        coarse = max(2, round(self.trials * 0.6))
        return coarse, max(1, self.trials - coarse)


class Clock:
    """Seconds spent in each step, kept across restarts of the same tune folder (a killed step's
    up to its last beat), and the time left when each step first decided how much to do."""

    def __init__(self, folder: Path, budget: Budget, beat: float = BEAT_SECONDS):
        self.file, self.pins_file = folder / "timings.json", folder / "budget_left.json"
        self.budget, self.beat = budget, beat
        self.steps: dict[str, float] = read_json(self.file)
        self.pins: dict[str, float] = read_json(self.pins_file)

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Count the time spent inside: written every `beat` seconds, so that a kill loses at
        most one beat of it, and once more when the step ends (by an error or Ctrl-C too)."""
        started, done = time.perf_counter(), threading.Event()
        base = self.steps.setdefault(name, 0.0)

        def count() -> None:
            self.steps[name] = base + time.perf_counter() - started
            write_atomic(self.file, json.dumps(self.steps, indent=2))

        def beat() -> None:
            while not done.wait(self.beat):
                count()

        thread = threading.Thread(target=beat, name=f"clock: {name}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()
            count()

    def left(self) -> float:
        if self.budget.seconds is None:
            return float("inf")
        return self.budget.seconds - sum(self.steps.values())

    def left_at(self, step: str) -> float:
        """The time left when `step` first asked: what its sizes are decided from, so that a
        restart, which counts the stopped start's time, still sizes the step as it did (a
        resumed sweep or final model must be the one that was started)."""
        if self.budget.seconds is None:
            return self.left()
        if step not in self.pins:
            self.pins[step] = self.left()
            write_atomic(self.pins_file, json.dumps(self.pins, indent=2))
        return self.pins[step]


def read_json(path: Path) -> dict[str, float]:
    return json.loads(path.read_text()) if path.is_file() else {}

"""The procedure's budget: wall clock or trials, how it splits between stages, time spent."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

from recipes.core.errors import RecipeError
from recipes.core.files import write_atomic

MIN_SECONDS = 60  # a wall-clock budget's floor: the rest is planned from measured times
MIN_TRIALS = 3  # two coarse trials and one refine trial
CHECKS = "1-3 checks"  # the steps' names in a tune folder's timings.json and plan.json
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
            raise RecipeError(f"--budget {text!r}: use minutes (5m), seconds (300s) or trials (12)")
        value, unit = float(match[1]), match[2]
        if unit is None:
            if int(value) < MIN_TRIALS:
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
    """Seconds spent in each step, kept across restarts of the same tune folder."""

    def __init__(self, folder: Path, budget: Budget):
        self.file, self.budget = folder / "timings.json", budget
        self.steps: dict[str, float] = (
            json.loads(self.file.read_text()) if self.file.is_file() else {}
        )
        self.start = time.perf_counter()

    def record(self, step: str, started: float) -> None:
        self.steps[step] = self.steps.get(step, 0.0) + time.perf_counter() - started
        write_atomic(self.file, json.dumps(self.steps, indent=2))

    def left(self) -> float:
        if self.budget.seconds is None:
            return float("inf")
        return self.budget.seconds - sum(self.steps.values())

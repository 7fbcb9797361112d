"""Kill a command with SIGKILL at random moments, restart it each time, then let it finish.

Used by tests/test_crash.py (a few kills per command) and scripts/kill_harness.py (ten).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass

POLL = 0.05  # seconds between two reads of a command's progress


@dataclass
class Outcome:
    kills: int  # times the command was killed mid-run
    starts: int  # times it was started, the finishing one included
    returncode: int
    stderr: str


def run_with_kills(
    command: list[str],
    kills: int,
    seed: int,
    window: tuple[float, float],
    progress: Callable[[], float] = time.monotonic,
    **popen,
) -> Outcome:
    """Start `command`; `kills` times, SIGKILL its process group once `progress` (by default
    seconds; a run's saved step keeps kills mid-run however fast the machine runs) has gone a
    random amount drawn from `window` past where that start found it (a run that ends first is
    not killed); then run it to the end."""
    rng, killed, starts = random.Random(seed), 0, 0
    while True:
        starts += 1
        goal = progress() + rng.uniform(*window)
        proc = subprocess.Popen(
            command, start_new_session=True, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True, **popen,
        )  # fmt: skip
        if killed < kills and not ended(proc, progress, goal):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            killed += 1
            continue
        _, err = proc.communicate(timeout=900)
        return Outcome(killed, starts, proc.returncode, err)


def ended(proc: subprocess.Popen, progress: Callable[[], float], goal: float) -> bool:
    """Wait until the command ends (True) or its progress reaches `goal` (False)."""
    while progress() < goal:
        try:
            proc.wait(timeout=POLL)
            return True
        except subprocess.TimeoutExpired:
            pass
    return False

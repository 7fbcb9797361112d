"""Kill a command with SIGKILL at random moments, restart it each time, then let it finish.

Used by tests/test_crash.py (a few kills per command) and scripts/kill_harness.py (ten).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
from dataclasses import dataclass


@dataclass
class Outcome:
    kills: int  # times the command was killed mid-run
    starts: int  # times it was started, the finishing one included
    returncode: int
    stderr: str


def run_with_kills(
    command: list[str], kills: int, seed: int, window: tuple[float, float], **popen
) -> Outcome:
    """Start `command`; `kills` times, SIGKILL its process group after a random delay drawn
    from `window` seconds (a run that ends first is not killed); then run it to the end."""
    rng, killed, starts = random.Random(seed), 0, 0
    while True:
        starts += 1
        proc = subprocess.Popen(
            command, start_new_session=True, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True, **popen,
        )  # fmt: skip
        if killed < kills:
            try:
                proc.wait(timeout=rng.uniform(*window))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()
                killed += 1
                continue
        _, err = proc.communicate(timeout=900)
        return Outcome(killed, starts, proc.returncode, err)

"""A schedule that ends early: past a re-plan, the rest of the LR schedule runs faster, so that
it still ends (at zero, for the families that decay) on the run's new last update."""

from __future__ import annotations

from dataclasses import dataclass

from torch.optim.lr_scheduler import LRScheduler


@dataclass
class Warp:
    """The run's update -> the schedule's: linear from the last re-plan to the run's end."""

    planned: int  # the schedule's last update, as it was built
    total: int  # the run's last update now
    since: int = 0  # the run's update at the last re-plan
    at: float = 0.0  # the schedule's update there

    def __call__(self, step: int) -> float:
        rate = (self.planned - self.at) / max(self.total - self.since, 1)
        return self.at + (step - self.since) * rate

    def end_at(self, step: int, total: int) -> None:
        """From `step` on, run the rest of the schedule in the updates up to `total`."""
        self.at, self.since, self.total = self(step), step, total


def advance(scheduler: LRScheduler, position: float) -> None:
    """Set the LR to the schedule's value at `position`, an update that may be fractional."""
    scheduler.last_epoch = position - 1
    scheduler.step()

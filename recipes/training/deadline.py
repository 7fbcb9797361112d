"""`max_seconds`: a run that ends on time on a machine whose speed changes. Each epoch's end
re-plans the updates left to the time left, at the speed the epoch just ran, and the rest of
the LR schedule is compressed to end on the new last update (never past the planned one)."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import torch
from tqdm.auto import tqdm

from recipes.schedules import affordable_updates

SAY_SHARE = 0.02  # of the planned updates: how far the end moves before it is said again

if TYPE_CHECKING:
    from recipes.training.engine import Loop


def updates_in_time(loop: Loop, left: float, update_seconds: float, eval_seconds: float) -> int:
    """The run's last update if `left` seconds go to updates and their epochs' evaluations, with
    one more pass kept for the unaugmented training accuracy after the last epoch."""
    per_epoch, step = loop.plan.per_epoch, loop.state["step"]
    more = affordable_updates(left - eval_seconds, update_seconds * per_epoch, eval_seconds,
                              per_epoch)  # fmt: skip
    mine = torch.tensor([min(loop.warp.planned, step + more)], device=loop.accelerator.device)
    return int(loop.accelerator.gather(mine).min())  # every process stops at the same update


def worth_saying(loop: Loop, total: int, afforded: int) -> bool:
    """A move of the end by SAY_SHARE of the planned updates since it was last said, or the
    last update: a run of short epochs otherwise prints a line at each epoch's end."""
    said = loop.said_end or loop.warp.planned
    return afforded <= loop.state["step"] or abs(total - said) >= SAY_SHARE * loop.warp.planned


def keep_time(loop: Loop, spent: float, update_seconds: float, eval_seconds: float) -> None:
    """Move the run's end to the update the time left affords, and say so when it moves far; a run
    that has made its last update is over (its LR is at the schedule's end), however much time
    is left. One whose time is up makes one more update, at the schedule's end, so that it
    never stops mid-decay when the time runs out just before the end it last planned."""
    step, limit = loop.state["step"], loop.config.training.max_seconds
    if step >= loop.plan.total:
        return
    afforded = updates_in_time(loop, limit - spent, update_seconds, eval_seconds)
    total = max(afforded, step + 1)
    if total == loop.plan.total:
        return
    if loop.accelerator.is_main_process and worth_saying(loop, total, afforded):
        more = f"{afforded - step} more" if afforded > step else "none (one last update)"
        loop.said_end = total
        tqdm.write(  # above the progress bar, not inside its line
            f"max_seconds: {limit - spent:.0f}s left at update {step} afford {more} "
            f"at {update_seconds * 1000:.0f}ms each; the schedule now ends at update {total} "
            f"(planned {loop.warp.planned})"
        )
    loop.warp.end_at(step, total)
    loop.plan = dataclasses.replace(loop.plan, total=total)
    loop.state["schedule"] = dataclasses.asdict(loop.warp)

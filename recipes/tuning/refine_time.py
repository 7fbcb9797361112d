"""Whether a tune's refine stage runs, and how many trials: what fits beside the final model's
time, and nothing when the coarse stage kept the recipe's values."""

from __future__ import annotations

from pathlib import Path

from recipes.tuning.budget import FINAL, Clock, refine_step
from recipes.tuning.coarse import ranges
from recipes.tuning.plan import MIN_REFINE, Plan, remeasured, save_plan


def refine_trials(
    refine: dict, round_: int, rows: list[dict], clock: Clock, plan: Plan | None, notes: list
) -> int:
    """Refine trials to run: all of run_cap for a budget in trials; else those that fit beside
    the final model's time at the speed the trials so far ran, and none when fewer than two
    fit (a lone trial would re-run the incumbent and compare it with nothing)."""
    cap, epochs = refine["run_cap"], refine["num_epochs"] * round_  # the coarse file's options
    if plan is None:
        return cap
    spare = clock.left_at(refine_step(round_)) - plan.planned[FINAL]
    speed = remeasured(plan, rows)  # the finished trials
    todo = min(cap, speed.trials_that_fit(spare, epochs, plan.refine_fraction))
    if todo < cap:
        notes.append(f"refine round {round_}: {todo} of {cap} trials of {epochs} epochs fit the "
                     f"{max(spare, 0):.0f}s left beside the final model's")  # fmt: skip
    if todo < MIN_REFINE:
        notes.append(f"refine round {round_} skipped: it takes {MIN_REFINE} trials to compare "
                     "the incumbent with anything; its time goes to the final model")  # fmt: skip
        return 0
    return todo


def recipe_confirmed(
    raw: dict, first: dict, choice: dict, folder: Path, plan: Plan | None, notes: list[str]
) -> bool:
    """Under a budget in wall time, a coarse stage that keeps the recipe's own values (all that
    it searched: trial 0 ran them) ends the search: refine would re-run them against challengers
    it cannot tell apart from them in a few epochs, and its planned time buys the final model
    more updates of values already known good."""
    if plan is None or set(first) != set(ranges(raw)) or choice["trial"] != 0:
        return False
    if refine_step(1) in plan.planned:  # not yet moved by an earlier start
        plan.planned[FINAL] += plan.planned.pop(refine_step(1))
        save_plan(folder, plan)
    notes.append("refine skipped: the coarse stage kept the recipe's values, so the time planned "
                 "for refine goes to the final model")  # fmt: skip
    return True

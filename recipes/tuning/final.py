"""The procedure's final model: the chosen trial's values on all the data, as long as the budget
left affords."""

from __future__ import annotations

from pathlib import Path

from recipes.core.config import RecipeConfig, parse_config
from recipes.tuning.plan import Plan, final_length, time_limit

OWN = ("--output_dir=", "--run_name=", "--wandb_group=", "--num_epochs=", "--max_steps=",
       "--max_train_samples=", "--warmup_epochs=", "--warmup_steps=", "--max_seconds=")  # fmt: skip


def final_args(
    best: dict, folder: Path, epochs: int, steps: int = 0, limit: float = 0
) -> list[str]:
    """The best trial's arguments, trained longer into the tune folder's `final/` on all the
    data, with the recipe's own warmup rather than a short trial's, within `limit` seconds."""
    kept = [a for a in best["args"] if not a.startswith(OWN)]
    out = f"--output_dir={folder / 'final'}"
    return [*kept, f"--num_epochs={epochs}", f"--max_steps={steps}", f"--max_seconds={limit}", out]


def final_config(
    recipe: str | None, best: dict, folder: Path, speed: Plan | None, seconds: float
) -> RecipeConfig:
    """Twice the best trial's epochs under a budget in trials; under one in wall time, the
    updates `seconds` afford at `speed` (the last epoch may stop part-way; planned never shorter
    than the best trial), with max_seconds holding them to the time left if the machine slows."""
    if speed is None:
        return parse_config(recipe, final_args(best, folder, 2 * best["epochs"]))
    training = parse_config(recipe, best["args"]).training
    epochs, steps = final_length(speed, seconds, training, best["epochs"])
    return parse_config(recipe, final_args(best, folder, epochs, steps, time_limit(speed, seconds)))

"""How a wall-clock budget is spent, planned from a short timed run on this machine, model and
data: seconds per training example, per evaluation, and a run's fixed cost."""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from recipes.core import runs
from recipes.core.config import RecipeConfig, parse_config
from recipes.core.files import write_atomic

FINAL_SHARE = 0.6  # of the budget after the checks: the final model's long run
COARSE_SHARE = 0.45  # of the search time; the rest goes to refinement
REFINE_EPOCHS = 3  # a refine trial; the final model trains at least twice as long
MIN_COARSE = 6  # fewer coarse trials than this and the coarse trials train on a subset
MIN_FRACTION = 0.05  # the smallest subset of the training set a coarse trial uses
PROBE_BATCHES = 8  # the timed run: this many batches, one evaluation


@dataclass
class Plan:
    """The stages' sizes and their planned seconds, from the timed run."""

    startup_seconds: float  # a run's fixed cost: data, model, run folder, the saved model
    epoch_seconds: float  # the updates of one epoch over the whole training set
    eval_seconds: float  # one validation pass
    train_size: int
    coarse: int  # coarse trials (1 epoch each)
    refine: int  # refine trials (REFINE_EPOCHS each)
    fraction: float  # of the training set each coarse trial uses
    planned: dict[str, float]  # step -> seconds
    left: float = 0.0  # the budget left when planned

    def fits(self) -> bool:
        """Whether the plan fits the budget that was left (10% slack)."""
        return sum(self.planned.values()) <= 1.1 * self.left

    def trial_seconds(self, epochs: float, fraction: float = 1.0) -> float:
        return self.startup_seconds + epochs * (fraction * self.epoch_seconds + self.eval_seconds)

    def trials_that_fit(self, seconds: float, epochs: float) -> int:
        """Whole-data trials of `epochs` that fit in `seconds`."""
        return max(0, math.floor(seconds / self.trial_seconds(epochs)))

    def affordable_epochs(self, seconds: float) -> int:
        """Whole-data epochs a run can train in `seconds`."""
        per_epoch = self.epoch_seconds + self.eval_seconds
        return max(1, math.floor((seconds - self.startup_seconds) / max(per_epoch, 1e-9)))

    def coarse_samples(self) -> int:
        """max_train_samples for a coarse trial (0: all)."""
        return 0 if self.fraction >= 1 else max(1, round(self.fraction * self.train_size))


def time_run(recipe: str | None, config: RecipeConfig, folder: Path) -> dict[str, float]:
    """A short real run of the recipe (a few batches, one evaluation), timed piece by piece."""
    from recipes.core.data import load_image_data
    from recipes.training.route import run_recipe

    train_size = len(load_image_data(config.data).splits["train"])
    examples = min(train_size, PROBE_BATCHES * config.training.per_device_train_batch_size)
    args = ["--num_epochs=1", f"--max_train_samples={examples}", "--report_to=none",
            "--warmup_epochs=0", "--warmup_steps=0",  # a few batches: no room for a warmup
            f"--output_dir={folder}", "--overwrite_output_dir=True"]  # fmt: skip
    started = time.perf_counter()
    run_recipe(parse_config(recipe, args))
    wall = time.perf_counter() - started
    record = runs.read_jsonl(folder / runs.EPOCHS_FILE)[-1]
    train, evaluation = record["train_seconds"], record.get("eval_seconds", 0.0)
    return {"startup": max(wall - train - evaluation, 0.0), "per_example": train / examples,
            "eval": evaluation, "train_size": train_size}  # fmt: skip


def make_plan(left: float, timing: dict[str, float]) -> Plan:
    """Split `left` seconds between the coarse trials, the refine trials and the final model."""
    epoch = timing["per_example"] * timing["train_size"]
    plan = Plan(timing["startup"], epoch, timing["eval"], int(timing["train_size"]), 0, 0, 1.0, {},
                left)  # fmt: skip
    final = max(plan.trial_seconds(2 * REFINE_EPOCHS), FINAL_SHARE * left)
    search = max(left - final, 0.0)
    coarse_time, refine_trial = COARSE_SHARE * search, plan.trial_seconds(REFINE_EPOCHS)
    plan.refine = max(1, math.floor((search - coarse_time) / refine_trial))
    if coarse_time / plan.trial_seconds(1) < MIN_COARSE:  # more, shorter trials on a subset
        per_trial = coarse_time / MIN_COARSE - plan.startup_seconds - plan.eval_seconds
        plan.fraction = round(min(1.0, max(MIN_FRACTION, per_trial / max(epoch, 1e-9))), 3)
    plan.coarse = max(2, math.floor(coarse_time / plan.trial_seconds(1, plan.fraction)))
    plan.planned = {
        "4 coarse search": plan.coarse * plan.trial_seconds(1, plan.fraction),
        "5 refine (round 1)": plan.refine * refine_trial,
        "final model and test": final,
    }
    return plan


def save_plan(folder: Path, plan: Plan) -> None:
    write_atomic(folder / "plan.json", json.dumps(asdict(plan), indent=2))


def load_plan(folder: Path) -> Plan | None:
    """The plan an earlier start of the same tune folder made, so a restart keeps it."""
    path = folder / "plan.json"
    return Plan(**json.loads(path.read_text())) if path.is_file() else None

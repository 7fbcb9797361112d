"""How a wall-clock budget is spent, planned from a short timed run on this machine, model and
data: seconds per training example, per evaluation, and a run's fixed cost."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from itertools import pairwise
from pathlib import Path
from statistics import median
from typing import Any

from recipes.core import runs
from recipes.core.arguments import TrainingArguments
from recipes.core.config import RecipeConfig, parse_config
from recipes.core.files import write_atomic
from recipes.schedules import affordable_updates, updates_per_epoch
from recipes.tuning.budget import COARSE, FINAL, refine_step

FINAL_SHARE = 0.6  # of the budget after the checks: the final model's long run, at least
MAX_FINAL_SHARE = 0.8  # and up to this when the recipe's own epochs need more than FINAL_SHARE
COARSE_SHARE = 0.45  # of the search time; the rest goes to refinement
REFINE_EPOCHS = 3  # a refine trial at most; the final model trains at least twice as long
MIN_COARSE = 6  # fewer coarse trials than this and the coarse trials train on a subset
MIN_REFINE = 2  # fewer refine trials than this and they train shorter, or on a subset
MIN_FRACTION = 0.05  # the smallest subset of the training set a search trial uses
PROBE_BATCHES = 8  # the timed run: two epochs of this many batches, each with an evaluation
AFTER_TRAINING = 3  # evaluations' worth after the final's last epoch: unaugmented train, test


@dataclass
class Plan:
    """The stages' sizes and their planned seconds, from the timed run."""

    startup_seconds: float  # a run's fixed cost: data, model, run folder, the saved model
    epoch_seconds: float  # the updates of one epoch over the whole training set
    eval_seconds: float  # one validation pass
    train_size: int
    coarse: int  # coarse trials (1 epoch each)
    refine: int  # refine trials (refine_epochs each)
    fraction: float  # of the training set each coarse trial uses
    planned: dict[str, float]  # step -> seconds
    left: float = 0.0  # the budget left when planned
    refine_epochs: int = REFINE_EPOCHS
    refine_fraction: float = 1.0  # of the training set each refine trial uses

    def fits(self) -> bool:
        """Whether the plan fits the budget that was left (10% slack)."""
        return sum(self.planned.values()) <= 1.1 * self.left

    def trial_seconds(self, epochs: float, fraction: float = 1.0) -> float:
        return self.startup_seconds + epochs * (fraction * self.epoch_seconds + self.eval_seconds)

    def trials_that_fit(self, seconds: float, epochs: float, fraction: float = 1.0) -> int:
        """Trials of `epochs` on `fraction` of the data that fit in `seconds`."""
        return max(0, math.floor(seconds / self.trial_seconds(epochs, fraction)))

    def affordable_updates(self, seconds: float, per_epoch: int) -> int:
        """Updates of `per_epoch` an epoch a run can make in `seconds`, its fixed cost paid."""
        spare = seconds - self.startup_seconds
        return affordable_updates(spare, self.epoch_seconds, self.eval_seconds, per_epoch)

    def samples(self, fraction: float) -> int:
        """max_train_samples for a trial on `fraction` of the data (0: all)."""
        return 0 if fraction >= 1 else max(1, round(fraction * self.train_size))

    def shape(self, seconds: float, trials: int, longest: int) -> tuple[int, float]:
        """Epochs and share of the data of each of `trials` runs that fit in `seconds`: whole
        epochs (up to `longest`) while one fits, else one epoch on a subset, so that no image
        is seen twice (a subset trained for epochs favours more regularisation than the
        whole set needs)."""
        per_trial = seconds / trials - self.startup_seconds
        epochs = math.floor(per_trial / max(self.epoch_seconds + self.eval_seconds, 1e-9))
        if epochs >= 1:
            return min(epochs, longest), 1.0
        fraction = (per_trial - self.eval_seconds) / max(self.epoch_seconds, 1e-9)
        return 1, max(MIN_FRACTION, math.floor(fraction * 1000) / 1000)


def time_run(recipe: str | None, config: RecipeConfig, folder: Path) -> dict[str, float]:
    """A short real run of the recipe, timed piece by piece: two epochs of a few batches, each
    with an evaluation. The second gives the steady speed (the first pays for warm-up: a GPU
    tunes its kernels, allocators grow), and what the two do not explain is the run's fixed cost."""
    from recipes.core.data import load_image_data
    from recipes.training.route import run_recipe

    train_size = len(load_image_data(config.data).splits["train"])
    examples = min(train_size, PROBE_BATCHES * config.training.per_device_train_batch_size)
    args = ["--num_epochs=2", f"--max_train_samples={examples}", "--report_to=none",
            "--warmup_epochs=0", "--warmup_steps=0",  # a few batches: no room for a warmup
            f"--output_dir={folder}", "--overwrite_output_dir=True"]  # fmt: skip
    started = time.perf_counter()
    run_recipe(parse_config(recipe, args))
    wall = time.perf_counter() - started
    steady = runs.read_jsonl(folder / runs.EPOCHS_FILE)[-1]
    train, evaluation = steady["train_seconds"], steady.get("eval_seconds", 0.0)
    return {"startup": max(wall - 2 * (train + evaluation), 0.0), "per_example": train / examples,
            "eval": evaluation, "train_size": train_size}  # fmt: skip


def final_seconds(plan: Plan, left: float, recipe_epochs: int) -> float:
    """The final model's time: FINAL_SHARE of `left`, more (up to MAX_FINAL_SHARE) when the
    recipe's own epochs need it, and never less than twice a refine trial."""
    wanted = min(max(FINAL_SHARE * left, plan.trial_seconds(recipe_epochs)), MAX_FINAL_SHARE * left)
    return max(wanted, plan.trial_seconds(2 * REFINE_EPOCHS))


def make_plan(left: float, timing: dict[str, float], recipe_epochs: int = 0) -> Plan:
    """Split `left` seconds between the coarse trials, the refine trials and the final model."""
    epoch = timing["per_example"] * timing["train_size"]
    plan = Plan(timing["startup"], epoch, timing["eval"], int(timing["train_size"]), 0, 0, 1.0, {},
                left)  # fmt: skip
    final = final_seconds(plan, left, recipe_epochs)
    search = max(left - final, 0.0)
    coarse_time, refine_time = COARSE_SHARE * search, (1 - COARSE_SHARE) * search
    plan.refine_epochs, plan.refine_fraction = plan.shape(refine_time, MIN_REFINE, REFINE_EPOCHS)
    refine_trial = plan.trial_seconds(plan.refine_epochs, plan.refine_fraction)
    plan.refine = max(1, math.floor(refine_time / refine_trial))
    _, plan.fraction = plan.shape(coarse_time, MIN_COARSE, 1)  # more, shorter trials on a subset
    plan.coarse = max(2, math.floor(coarse_time / plan.trial_seconds(1, plan.fraction)))
    plan.planned = {
        COARSE: plan.coarse * plan.trial_seconds(1, plan.fraction),
        refine_step(1): plan.refine * refine_trial,
        FINAL: final,
    }
    return plan


def final_length(speed: Plan, seconds: float, t: TrainingArguments, least: int) -> tuple[int, int]:
    """Epochs and updates (max_steps: the last epoch may stop part-way) of the final model in
    `seconds` less its last passes; never fewer than `least` epochs (the chosen trial's)."""
    per_epoch = updates_per_epoch(speed.train_size, t)
    steps = speed.affordable_updates(seconds - AFTER_TRAINING * speed.eval_seconds, per_epoch)
    steps = max(steps, least * per_epoch)
    return math.ceil(steps / per_epoch), steps


def time_limit(speed: Plan, seconds: float) -> float:
    """max_seconds for a run given `seconds` in all: less its fixed cost and the passes after
    its last epoch's validation, so that a slow machine still ends the run on time."""
    return max(seconds - speed.startup_seconds - (AFTER_TRAINING - 1) * speed.eval_seconds, 1.0)


def trial_costs(row: dict[str, Any]) -> tuple[list[float], list[float], list[float]]:
    """One finished trial (a sweep summary's row) in seconds: per training image and per
    evaluation (with the checkpoint after it), epoch by epoch, and its fixed cost (its wall time
    less its epochs'). Empty for a trial that did not finish."""
    if not row.get("run_dir") or not row.get("seconds"):
        return [], [], []
    run_dir = Path(row["run_dir"])
    results = run_dir / runs.RESULTS_FILE
    if not results.is_file():
        return [], [], []
    images = max(1, json.loads(results.read_text())["train_examples"])
    epochs = runs.read_jsonl(run_dir / runs.EPOCHS_FILE)
    per_image = [r["train_seconds"] / images for r in epochs]
    between = [b["seconds"] - a["seconds"] - b["train_seconds"] for a, b in pairwise(epochs)]
    fixed = row["seconds"] - epochs[-1]["seconds"] - epochs[-1].get("eval_seconds", 0.0)
    return per_image, between or [r.get("eval_seconds", 0.0) for r in epochs], [max(fixed, 0.0)]


def remeasured(plan: Plan, rows: Iterable[dict[str, Any]]) -> Plan:
    """The plan's costs measured again on finished search trials, which ran as the later ones
    and the final model will: medians over their epochs and runs (the timed run's few batches
    can be far off, and a sweep trial costs more than a bare run)."""
    costs = [trial_costs(row) for row in rows]
    per_image, per_eval, fixed = ([x for c in costs for x in c[i]] for i in range(3))
    if not per_image:
        return plan
    return replace(plan, epoch_seconds=median(per_image) * plan.train_size,
                   eval_seconds=median(per_eval), startup_seconds=median(fixed))  # fmt: skip


def save_plan(folder: Path, plan: Plan) -> None:
    write_atomic(folder / "plan.json", json.dumps(asdict(plan), indent=2))


def load_plan(folder: Path) -> Plan | None:
    """The plan an earlier start of the same tune folder made, so a restart keeps it."""
    path = folder / "plan.json"
    return Plan(**json.loads(path.read_text())) if path.is_file() else None

"""Step 4's sweep file: where the coarse search looks, and how short its trials are."""

from __future__ import annotations

from recipes.core.arguments import TrainingArguments
from recipes.tuning.plan import REFINE_EPOCHS

SHORT_WARMUP = 0.25  # epochs of warmup at most in a search trial


def command(recipe: str | None) -> list[str]:
    """The trials' command line, as `wandb agent` would run it."""
    return [
        "${env}",
        "${interpreter}",
        "-m",
        "recipes",
        "train",
        *([recipe] if recipe else []),
        "${args}",
    ]


def short_warmup(training: TrainingArguments) -> dict[str, dict]:
    """A search trial of one epoch (or a few) warms up for a quarter epoch at most."""
    if not (training.warmup_epochs or training.warmup_steps):
        return {}
    epochs = min(training.warmup_epochs or SHORT_WARMUP, SHORT_WARMUP)
    return {"warmup_epochs": {"value": epochs}, "warmup_steps": {"value": 0}}


def coarse_sweep(
    recipe: str | None,
    lrs: tuple[float, float],
    sizes: tuple[int, ...],
    training: TrainingArguments,
    report_to: str,
) -> dict:
    """Step 4 as a W&B sweep: random (Sobol) LR and weight decay around the found LR, 1 epoch
    (on a subset when the budget asks). `lrs`: the found LR and where the range test's loss
    turned up, which the LR never passes. `sizes`: coarse trials, refine trials, the coarse
    trials' max_train_samples (0: the recipe's) and the recipe's own."""
    (lr, lr_max), (coarse, refine, samples, full) = lrs, sizes
    fixed = {"num_epochs": {"value": 1}, "report_to": {"value": report_to},
             **short_warmup(training)}  # fmt: skip
    again = {"max_train_samples": full} if samples else {}  # refine: the recipe's own data
    if samples:
        fixed["max_train_samples"] = {"value": samples}
    return {
        "name": "coarse",
        "method": "random",
        "metric": {"name": "val_accuracy", "goal": "maximize"},
        "run_cap": coarse,
        "parameters": {
            "learning_rate": {
                "distribution": "log_uniform_values",
                "min": float(f"{lr / 10:.3g}"),
                "max": float(f"{min(lr * 10, lr_max, 1.0):.3g}"),
            },
            "weight_decay": {"distribution": "log_uniform_values", "min": 1e-5, "max": 0.1},
            **fixed,
        },
        "refine": {"num_epochs": REFINE_EPOCHS, "run_cap": refine, **again},  # the best quarter
        "command": command(recipe),
    }

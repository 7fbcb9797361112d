"""Step 4's sweep file: where the coarse search looks, and how short its trials are."""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass(frozen=True)
class StageSizes:
    """How many trials each search stage runs, and on how many training images (0: all)."""

    coarse: int
    refine: int
    coarse_samples: int = 0
    refine_samples: int = 0
    full: int = 0  # the recipe's own max_train_samples
    refine_epochs: int = REFINE_EPOCHS


def coarse_sweep(
    recipe: str | None,
    lrs: tuple[float, float],
    sizes: StageSizes,
    training: TrainingArguments,
    report_to: str,
) -> dict:
    """Step 4 as a W&B sweep: random (Sobol) LR and weight decay around the found LR, 1 epoch
    (on a subset when the budget asks). `lrs`: the found LR and where the range test's loss
    turned up, which the LR never passes."""
    lr, lr_max = lrs
    fixed = {"num_epochs": {"value": 1}, "report_to": {"value": report_to},
             **short_warmup(training)}  # fmt: skip
    if sizes.coarse_samples:
        fixed["max_train_samples"] = {"value": sizes.coarse_samples}
    refine = {"num_epochs": sizes.refine_epochs, "run_cap": sizes.refine}  # around the top 25%
    if sizes.coarse_samples or sizes.refine_samples:  # refine: its own subset, or the recipe's
        refine["max_train_samples"] = sizes.refine_samples or sizes.full
    return {
        "name": "coarse",
        "method": "random",
        "metric": {"name": "val_accuracy", "goal": "maximize"},
        "run_cap": sizes.coarse,
        "parameters": {
            "learning_rate": {
                "distribution": "log_uniform_values",
                "min": float(f"{lr / 10:.3g}"),
                "max": float(f"{min(lr * 10, lr_max, 1.0):.3g}"),
            },
            "weight_decay": {"distribution": "log_uniform_values", "min": 1e-5, "max": 0.1},
            **fixed,
        },
        "refine": refine,
        "command": command(recipe),
    }


def ranges(raw: dict) -> dict[str, dict]:
    """The parameters a sweep file searches over a range (the others are fixed values)."""
    return {name: param for name, param in raw["parameters"].items() if "min" in param}


def recipe_point(raw: dict, training: TrainingArguments) -> dict[str, float]:
    """The recipe's own values, as the coarse stage's first trial, where its ranges hold them:
    a recipe's defaults are an expert's prior, and the search has to beat them to be used."""
    return {
        name: getattr(training, name)
        for name, param in ranges(raw).items()
        if param["min"] <= getattr(training, name) <= param["max"]
    }


def first_trial_note(raw: dict, first: dict[str, float], training: TrainingArguments) -> str:
    """What coarse trial 0 runs: the recipe's values, or those its ranges hold with the others
    sampled, so that a reader of the report knows how far trial 0 is the recipe's."""
    if not first:
        return "the recipe's own values lie outside the coarse ranges: trial 0 is sampled"
    outside = [f"{name} {getattr(training, name):g} lies outside {p['min']:g} to {p['max']:g}"
               for name, p in ranges(raw).items() if name not in first]  # fmt: skip
    if not outside:
        return f"coarse trial 0: the recipe's own values {first}"
    return (f"coarse trial 0: the recipe's {first} only, as its {', '.join(outside)}, "
            "so trial 0 samples it")  # fmt: skip

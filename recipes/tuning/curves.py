"""Step 6: read a run's learning curves by the lecture's rules, each finding with its evidence."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from recipes.core import runs
from recipes.core.errors import RecipeError


@dataclass
class Finding:
    """One rule that fired: what the curves show, the numbers behind it, what to do."""

    rule: str
    finding: str
    advice: str
    evidence: dict

    def __str__(self) -> str:
        numbers = ", ".join(
            f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in self.evidence.items()
        )
        return f"{self.rule}: {self.finding} ({numbers}) -> {self.advice}"


def load_history(run_dir: str | Path) -> dict:
    """The steps and epochs a run folder logged; refuses a folder `recipes train` did not write."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise RecipeError(
            f"{run_dir} is not a run folder (no config.yaml); give a folder `recipes train` wrote"
        )
    return {
        "steps": runs.read_jsonl(run_dir / runs.STEPS_FILE),
        "epochs": runs.read_jsonl(run_dir / runs.EPOCHS_FILE),
    }


MIN_POINTS = 5
DIVERGED = "lower the LR, add warmup or gradient clipping"


@dataclass
class Curves:
    """What the rules read: training loss and LR per logged step, and the epoch records."""

    step: list[int]
    loss: list[float]
    lr: list[float]
    epochs: list[dict]


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def window(values: list[float], at: float) -> float:
    """Mean of a tenth of the values around fraction `at` of the run (0 start, 1 end)."""
    width = max(1, len(values) // 10)
    start = min(max(0, round(at * len(values)) - width // 2), len(values) - width)
    return mean(values[start : start + width])


def finite(record: dict) -> bool:
    return all(math.isfinite(x) for k, x in record.items() if k.endswith("loss"))


def as_curves(history: dict) -> Curves:
    """Finite records only; step-level losses when enough were logged, else the epochs'."""
    steps = [r for r in history.get("steps") or [] if finite(r)]
    epochs = [r for r in history.get("epochs") or [] if finite(r)]
    if len(steps) < MIN_POINTS:
        steps = [{**r, "loss": r["train_loss"]} for r in epochs]
    return Curves(
        [r["step"] for r in steps], [r["loss"] for r in steps], [r["lr"] for r in steps], epochs
    )


def not_finite(history: dict) -> Finding | None:
    """A NaN or infinite loss anywhere in the history."""
    for record in (history.get("steps") or []) + (history.get("epochs") or []):
        if not finite(record):
            key = next(k for k, x in record.items() if k.endswith("loss") and not math.isfinite(x))
            return Finding(
                "diverged", f"{key} became {record[key]}", DIVERGED, {"step": record["step"]}
            )
    return None


def diverged(c: Curves) -> Finding | None:
    """A training loss that climbed far above its lowest point."""
    if len(c.loss) < MIN_POINTS:
        return None
    low, end = min(range(len(c.loss)), key=c.loss.__getitem__), window(c.loss, 1.0)
    if end > 2 * c.loss[low] and end > 0.5 * window(c.loss, 0.0):
        evidence = {"lowest": c.loss[low], "lowest_step": c.step[low], "end": end}
        return Finding("diverged", "the training loss climbed back up", DIVERGED, evidence)
    return None


def flat_start(c: Curves) -> Finding | None:
    """A loss that stays flat for the first fifth of training: the init is the prime suspect."""
    if len(c.loss) < MIN_POINTS:
        return None
    start, early, end = window(c.loss, 0.0), window(c.loss, 0.2), window(c.loss, 1.0)
    if early < 0.95 * start:
        return None
    moved = next((s for s, x in zip(c.step, c.loss, strict=True) if x < 0.9 * start), None)
    evidence = {"start": start, "at_20%": early, "end": end, "first_drop_step": moved}
    if end < 0.7 * start:
        finding = f"the loss was flat until step {moved}, then dropped"
        return Finding("flat_start", finding, "bad initialisation: run `recipes check`", evidence)
    finding = "the loss never dropped"
    return Finding("flat_start", finding, "not learning: run `recipes check`", evidence)


def plateau(c: Curves) -> Finding | None:
    """The loss dropped, then stopped improving while the LR stayed high: add decay."""
    if len(c.loss) < MIN_POINTS or c.lr[-1] < 0.5 * max(c.lr):
        return None
    start, late, end = window(c.loss, 0.0), window(c.loss, 2 / 3), window(c.loss, 1.0)
    if late > 0.7 * start or end < 0.05 * start or late - end > 0.05 * late:
        return None
    evidence = {"start": start, "at_2/3": late, "end": end, "lr_end": c.lr[-1]}
    finding = "the loss dropped, then plateaued at a constant LR"
    return Finding("plateau", finding, "add LR decay (cosine, or a step at the plateau)", evidence)


def early_decay(c: Curves) -> Finding | None:
    """A step decay of the LR while the loss was still going down."""
    top, width = max(c.lr, default=0.0), max(2, len(c.loss) // 10)
    for i in range(2 * width, len(c.lr)):
        if c.lr[i] <= 0.5 * c.lr[i - 1] and c.lr[i - 1] >= 0.3 * top:
            fall = 1 - mean(c.loss[i - width : i]) / mean(c.loss[i - 2 * width : i - width])
            if fall <= 0.05:
                return None
            evidence = {"decay_step": c.step[i], "fall_before": fall, "lr_after": c.lr[i]}
            finding = f"the LR was cut at step {c.step[i]} while the loss still fell {fall:.0%}"
            return Finding(
                "early_decay", finding, "decay later (move milestones) or use cosine", evidence
            )
    return None


def overfitting(c: Curves) -> Finding | None:
    """A growing train/validation gap, or a validation loss rising while training improves."""
    if len(c.epochs) < 3:
        return None
    gaps = [r["train_accuracy"] - r["val_accuracy"] for r in c.epochs]
    val = [r["val_loss"] for r in c.epochs]
    best = min(range(len(val)), key=val.__getitem__)
    rising = val[-1] > 1.1 * val[best] and c.epochs[-1]["train_loss"] < c.epochs[best]["train_loss"]
    if not (rising or (gaps[-1] >= 0.05 and gaps[-1] - min(gaps) >= 0.03)):
        return None
    evidence = {
        "gap_first": gaps[0],
        "gap_end": gaps[-1],
        "best_val_loss_epoch": c.epochs[best]["epoch"],
    }
    advice = "regularise (weight decay, augmentation, dropout), get more data, keep best_model"
    return Finding("overfitting", "the train/validation gap grows", advice, evidence)


def underfitting(c: Curves) -> Finding | None:
    """No train/validation gap while training accuracy is still low."""
    if len(c.epochs) < 2:
        return None
    last = c.epochs[-1]
    gap = last["train_accuracy"] - last["val_accuracy"]
    if gap > 0.02 or last["train_accuracy"] >= 0.95:
        return None
    evidence = {"train_accuracy": last["train_accuracy"], "val_accuracy": last["val_accuracy"]}
    finding = f"no train/validation gap at {last['train_accuracy']:.1%} training accuracy"
    return Finding("underfitting", finding, "train longer or use a bigger model", evidence)


def still_improving(c: Curves) -> Finding | None:
    """Validation accuracy still rising at the last epoch."""
    if len(c.epochs) < 3:
        return None
    acc = [r["val_accuracy"] for r in c.epochs]
    rise = acc[-1] - acc[-3]
    if acc[-1] < max(acc) or rise < 0.01:
        return None
    finding = f"validation accuracy rose {rise:.1%} over the last two epochs"
    evidence = {"val_accuracy_end": acc[-1], "rise_last_2_epochs": rise}
    return Finding("still_improving", finding, "train longer", evidence)


RULES = (diverged, flat_start, plateau, early_decay, overfitting, underfitting, still_improving)


def diagnose(history: dict) -> list[Finding]:
    """Apply the lecture's rules to {"steps": [...], "epochs": [...]} records of a run."""
    if not history.get("steps") and not history.get("epochs"):
        raise RecipeError("empty history: no steps or epochs were logged; train at least one epoch")
    broken = not_finite(history)
    found = [rule(as_curves(history)) for rule in RULES]
    return [broken] * (broken is not None) + [f for f in found if f is not None]


def format_findings(findings: list[Finding]) -> str:
    if not findings:
        return "learning curves: no problem found"
    return "\n".join(f"learning curves: {f}" for f in findings)

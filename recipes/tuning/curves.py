"""Step 6: read a run's learning curves by the lecture's rules, each finding with its evidence."""

from __future__ import annotations

import math
import statistics
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
MIN_EPOCHS = 5  # fewer epochs cannot tell a rising curve from noise
LOW_TRAIN = 0.95  # training accuracy below this, with no gap, is underfitting
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


def accuracy_noise(epochs: list[dict]) -> float:
    """One standard error of a validation accuracy: the binomial error of the validation set's
    size, or the jitter between the last epochs when that is larger."""
    acc = [r["val_accuracy"] for r in epochs]
    n, p = epochs[-1].get("val_samples"), acc[-1]
    binomial = math.sqrt(max(p * (1 - p), 1 / n) / n) if n else 0.0
    steps = [b - a for a, b in zip(acc[-6:], acc[-5:], strict=False)]
    jitter = statistics.stdev(steps) / math.sqrt(2) if len(steps) >= 2 else 0.0
    return max(binomial, jitter, 1e-4)


def smoothed(values: list[float]) -> list[float]:
    """Running means over a tenth of the values: a single noisy step moves no rule."""
    width = max(1, len(values) // 10)
    return [mean(values[i : i + width]) for i in range(len(values) - width + 1)]


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
    smooth = smoothed(c.loss)
    low, end = min(range(len(smooth)), key=smooth.__getitem__), window(c.loss, 1.0)
    if end > 2 * smooth[low] and end > 0.5 * window(c.loss, 0.0):
        evidence = {"lowest": smooth[low], "lowest_step": c.step[low], "end": end}
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
    """A train/validation gap that grew past the noise, or a validation loss rising while the
    training loss still falls."""
    if len(c.epochs) < 3:
        return None
    gaps = [r["train_accuracy"] - r["val_accuracy"] for r in c.epochs]
    val = [r["val_loss"] for r in c.epochs]
    best = min(range(len(val)), key=val.__getitem__)
    rising = (
        len(c.epochs) - best >= 2
        and min(val[-2:]) > 1.1 * val[best]
        and c.epochs[-1]["train_loss"] < c.epochs[best]["train_loss"]
    )
    grown = gaps[-1] - min(gaps)
    if not (rising or (gaps[-1] >= 0.05 and grown >= max(0.03, 3 * accuracy_noise(c.epochs)))):
        return None
    evidence = {
        "gap_first": gaps[0],
        "gap_end": gaps[-1],
        "best_val_loss_epoch": c.epochs[best]["epoch"],
    }
    advice = "regularise (weight decay, augmentation, dropout), get more data, keep best_model"
    return Finding("overfitting", "the train/validation gap grows", advice, evidence)


def underfitting(c: Curves) -> Finding | None:
    """Low training accuracy, measured without augmentation after the last epoch, and no gap to
    validation beyond the noise. The running accuracy under augmentation sits below validation
    on a healthy run, so without the clean measurement there is no verdict."""
    last = c.epochs[-1] if c.epochs else {}
    train = last.get("train_eval_accuracy")
    if len(c.epochs) < 2 or train is None:
        return None
    gap, noise = train - last["val_accuracy"], accuracy_noise(c.epochs)
    if gap > max(0.02, 2 * noise) or train >= LOW_TRAIN:
        return None
    evidence = {"train_eval_accuracy": train, "val_accuracy": last["val_accuracy"], "noise": noise}
    finding = f"no train/validation gap at {train:.1%} training accuracy (without augmentation)"
    return Finding("underfitting", finding, "train longer or use a bigger model", evidence)


def still_improving(c: Curves) -> Finding | None:
    """Validation accuracy still rising at the end beyond its noise: the median of the last
    epochs above the median of those before (one dip and recovery moves neither), and the last
    epoch near the best."""
    if len(c.epochs) < MIN_EPOCHS:
        return None
    acc = [r["val_accuracy"] for r in c.epochs]
    k, noise = max(2, len(acc) // 4), accuracy_noise(c.epochs)
    rise = statistics.median(acc[-k:]) - statistics.median(acc[-2 * k : -k])
    if rise <= max(0.01, 2 * noise) or acc[-1] < max(acc) - 2 * noise:
        return None
    finding = f"validation accuracy rose {rise:.1%} over the last {2 * k} epochs"
    evidence = {"val_accuracy_end": acc[-1], "rise": rise, "noise": noise}
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

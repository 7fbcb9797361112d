"""The curve rules on noisy synthetic histories: each fires on three that show its problem and
stays silent on three whose look-alike is noise, a short run, or one dip and recovery."""

from __future__ import annotations

import math
import random

import pytest

from recipes.tuning.curves import diagnose

N = 100  # logged steps


def cosine(i: int) -> float:
    return 1e-3 * 0.5 * (1 + math.cos(math.pi * i / N))


def constant(i: int) -> float:
    return 1e-3


def healthy_loss(i: int) -> float:
    return 2.3 * math.exp(-i / 15) + 0.05


def healthy_val(e: int) -> float:
    return 0.97 - 0.5 * math.exp(-e / 1.5)


def steps(loss, lr=cosine, noise: float = 0.05, seed: int = 0) -> list[dict]:
    """Step records whose loss carries multiplicative noise."""
    rng = random.Random(seed)
    return [{"step": 10 * (i + 1), "epoch": i / 10, "lr": lr(i),
             "loss": loss(i) * max(0.05, 1 + rng.gauss(0, noise))} for i in range(N)]  # fmt: skip


def epochs(train, val, count: int = 10, noise: float = 0.0, samples: int | None = 1000,
           val_loss=None, clean=None, seed: int = 0) -> list[dict]:  # fmt: skip
    """Epoch records: validation accuracy with noise; `clean` is the training accuracy measured
    without augmentation after the last epoch."""
    rng, out = random.Random(seed), []
    for e in range(1, count + 1):
        v = min(1.0, max(0.0, val(e) + rng.gauss(0, noise)))
        out.append({"epoch": e, "step": 100 * e, "lr": cosine(10 * e),
                    "train_accuracy": train(e), "train_loss": 2.3 * (1 - train(e)) + 0.02,
                    "val_accuracy": v, "val_samples": samples,
                    "val_loss": val_loss(e) if val_loss else 2.3 * (1 - v) + 0.05})  # fmt: skip
    if clean is not None:
        out[-1]["train_eval_accuracy"] = clean
    return out


def history(loss=healthy_loss, lr=cosine, noise: float = 0.05, records=None) -> dict:
    records = records or epochs(lambda e: healthy_val(e) - 0.01, healthy_val, noise=0.005)
    return {"steps": steps(loss, lr, noise), "epochs": records}


def climbing(i: int) -> float:
    return healthy_loss(i) if i < 60 else healthy_loss(60) * 1.1 ** (i - 60) + 0.05


def dip(e: int) -> float:
    return 0.77 if e == 6 else 0.95


CASES = {
    "diverged": {
        "fires": [history(climbing), history(lambda i: healthy_loss(i) if i < 50 else
                                             0.1 + 0.14 * (i - 50), noise=0.1),
                  history(lambda i: 0.2 + 2.1 * math.exp(-i / 10) if i < 60 else
                          0.2 + 0.04 * (i - 60), noise=0.05)],
        "silent": [history(noise=0.2), history(lambda i: healthy_loss(i) * (20 if i == 70 else 1)),
                   history(lambda i: 2.3 - 0.005 * i, noise=0.1)],
    },
    "flat_start": {
        "fires": [history(lambda i: 2.3 if i < 30 else healthy_loss(i - 30)),
                  history(lambda i: 2.3 if i < 40 else healthy_loss(i - 40), noise=0.1),
                  history(lambda i: 2.3)],
        "silent": [history(noise=0.1), history(noise=0.2),
                   history(lambda i: 2.3 * math.exp(-i / 5) + 0.05, noise=0.1)],
    },
    "plateau": {
        "fires": [history(lambda i: 1.0 + 1.3 * math.exp(-i / 8), constant),
                  history(lambda i: 1.0 + 1.3 * math.exp(-i / 8), constant, noise=0.1),
                  history(lambda i: 0.5 + 1.8 * math.exp(-i / 5), constant)],
        "silent": [history(lambda i: 1.0 + 1.3 * math.exp(-i / 8), cosine, noise=0.1),
                   history(lambda i: 2.3 * math.exp(-i / 60), constant),
                   history(lambda i: 2.3 * math.exp(-i / 5) + 0.01, constant)],
    },
    "early_decay": {
        "fires": [history(lambda i: 2.3 * math.exp(-i / 40) + 0.1,
                          lambda i, at=at: 1e-2 if i < at else 1e-3) for at in (20, 30, 40)],
        "silent": [history(lambda i: max(2.3 * math.exp(-i / 10), 0.3) + 0.1,
                           lambda i: 1e-2 if i < 60 else 1e-3, noise=0.02),
                   history(noise=0.1), history(noise=0.1, lr=constant)],
    },
    "overfitting": {
        "fires": [history(records=epochs(lambda e: min(1.0, 0.6 + 0.05 * e),
                                         lambda e: 0.7 - 0.01 * (e - 3) ** 2 / 3, noise=0.005,
                                         val_loss=lambda e: 0.8 + 0.02 * (e - 3) ** 2)),
                  history(records=epochs(lambda e: min(0.99, 0.8 + 0.03 * e), lambda e: 0.85,
                                         noise=0.01, val_loss=lambda e: 0.5)),
                  history(records=epochs(lambda e: 0.8 + 0.01 * e, lambda e: 0.85,
                                         val_loss=lambda e: 0.3 + 0.04 * max(0, e - 5)))],
        "silent": [history(),
                   history(records=epochs(lambda e: 0.9, lambda e: 0.88, noise=0.03, samples=100,
                                          val_loss=lambda e: 0.35, seed=4)),
                   history(records=epochs(lambda e: 0.9, lambda e: 0.89,
                                          val_loss=lambda e: 0.5 if e == 10 else 0.3))],
    },
    "underfitting": {
        "fires": [history(records=epochs(lambda e: 0.6, lambda e: 0.61, samples=270, clean=0.62)),
                  history(records=epochs(lambda e: 0.78, lambda e: 0.78, noise=0.01, clean=0.8)),
                  history(records=epochs(lambda e: 0.5, lambda e: 0.52, noise=0.02, clean=0.5))],
        "silent": [history(records=epochs(lambda e: 0.9, lambda e: 1.0, samples=270)),
                   history(records=epochs(lambda e: 0.97, lambda e: 0.985, clean=0.99)),
                   history(records=epochs(lambda e: 0.8, lambda e: 0.7, noise=0.01, clean=0.85))],
    },
    "still_improving": {
        "fires": [history(records=epochs(lambda e: 0.52 + 0.04 * e, lambda e: 0.5 + 0.04 * e,
                                         noise=0.005)),
                  history(records=epochs(lambda e: 0.5 + 0.03 * e, lambda e: 0.5 + 0.03 * e,
                                         count=8, noise=0.01, samples=5000)),
                  history(records=epochs(lambda e: 0.7 + 0.01 * e, lambda e: 0.7 + 0.01 * e,
                                         count=20, noise=0.002, samples=10000))],
        "silent": [history(records=epochs(lambda e: 0.3, lambda e: (0.3, 0.5, 0.85)[e - 1],
                                          count=3)),
                   history(records=epochs(lambda e: 0.9, dip, count=8)),
                   history(records=epochs(lambda e: 0.88, lambda e: 0.9, noise=0.01,
                                          samples=270))],
    },
}  # fmt: skip


@pytest.mark.parametrize("rule", CASES)
def test_each_rule_has_three_of_each(rule):
    assert len(CASES[rule]["fires"]) >= 3 and len(CASES[rule]["silent"]) >= 3


@pytest.mark.parametrize(
    ("rule", "case"), [(r, i) for r in CASES for i in range(len(CASES[r]["fires"]))]
)
def test_the_rule_fires(rule, case):
    findings = diagnose(CASES[rule]["fires"][case])
    assert rule in [f.rule for f in findings], [str(f) for f in findings]


@pytest.mark.parametrize(
    ("rule", "case"), [(r, i) for r in CASES for i in range(len(CASES[r]["silent"]))]
)
def test_the_rule_stays_silent(rule, case):
    findings = diagnose(CASES[rule]["silent"][case])
    assert rule not in [f.rule for f in findings], [str(f) for f in findings]

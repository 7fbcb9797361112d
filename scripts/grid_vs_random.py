"""The lecture's grid-versus-random figure from real short trainings on digits.

With the same budget, a 3x3 grid tries 3 learning rates (the important parameter) while
9 random trials try 9, so random search covers the important axis better.
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
from pathlib import Path

os.environ.setdefault("WANDB_MODE", "offline")

from recipes.search.engine import SweepOptions, run_stage  # noqa: E402
from recipes.search.spec import build_spec  # noqa: E402

LR = (1e-4, 1e-1)  # important
DROP = (0.0, 0.3)  # unimportant: drop_rate of a tiny model for one epoch


def spaced(low: float, high: float, n: int, log: bool) -> list[float]:
    """Cell centres of n equal cells, as a grid over the range would place them."""
    f = math.log10 if log else float
    points = [f(low) + (f(high) - f(low)) * (i + 0.5) / n for i in range(n)]
    return [float(f"{10**p if log else p:.3g}") for p in points]


def sweep(method: str, side: int, samples: int) -> dict:
    fixed = {
        "model_name": "test_convnext",
        "num_epochs": 1,
        "max_train_samples": samples,
        "report_to": "none",
    }
    if method == "grid":
        searched = {
            "learning_rate": {"values": spaced(*LR, side, True)},
            "drop_rate": {"values": spaced(*DROP, side, False)},
        }
    else:
        searched = {
            "learning_rate": {"distribution": "log_uniform_values", "min": LR[0], "max": LR[1]},
            "drop_rate": {"min": DROP[0], "max": DROP[1]},
        }
    return {
        "method": method,
        "metric": {"name": "val_accuracy", "goal": "maximize"},
        "run_cap": side * side,
        "parameters": {**searched, **{k: {"value": v} for k, v in fixed.items()}},
    }


def run(method: str, side: int, samples: int, folder: Path) -> list[dict]:
    args = SweepOptions(overwrite=True)
    study = run_stage(build_spec(sweep(method, side, samples), method), folder / method, args)
    return [
        {**t.user_attrs["values"], "value": t.value} for t in study.trials if t.value is not None
    ]


def draw(results: dict[str, list[dict]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(9, 6), height_ratios=(1, 2), sharex=True)
    for col, (method, rows) in enumerate(results.items()):
        top, main = axes[0, col], axes[1, col]
        rows = sorted(rows, key=lambda r: r["learning_rate"])
        lrs, accs = [r["learning_rate"] for r in rows], [r["value"] for r in rows]
        top.plot(lrs, accs, "o-", color="tab:green")
        top.set(
            ylabel="val accuracy", title=f"{method} search: {len(set(lrs))} learning rates tried"
        )
        main.scatter(lrs, [r["drop_rate"] for r in rows], c=accs, cmap="viridis", s=80)
        main.set(xscale="log", xlabel="learning_rate (important)", ylabel="drop_rate (unimportant)")
        best = max(rows, key=lambda r: r["value"])
        main.scatter([best["learning_rate"]], [best["drop_rate"]], marker="*", s=300, color="red")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--side", type=int, default=3, help="grid side; random gets side^2 trials")
    parser.add_argument("--samples", type=int, default=512, help="max_train_samples")
    parser.add_argument("--out", default="grid_vs_random.png")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = {m: run(m, args.side, args.samples, Path(tmp)) for m in ("grid", "random")}
    draw(results, Path(args.out))
    for method, rows in results.items():
        lrs = {r["learning_rate"] for r in rows}
        print(
            f"{method:>6}: {len(rows)} trials, {len(lrs)} distinct learning rates, "
            f"best val_accuracy {max(r['value'] for r in rows):.4f}"
        )
    print(f"figure: {args.out}")


if __name__ == "__main__":
    main()

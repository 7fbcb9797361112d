"""Grid against random search (Bergstra & Bengio 2012) on Fashion-MNIST, over 10 search seeds.

One parameter matters (AdamW's LR, 1e-4 to 1e-1 on a log scale) and one matters little
(drop_rate, 0 to 0.3, for one short epoch). A 3x3 grid (cell centres) and 9 random trials
share each repetition's training seed; random search also takes it as its sampler seed. Each
trial trains test_convnext at 32 px for one epoch on a 4,000-image subset (63 updates) and is
scored on the full 5,000 validation images.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

from studies import common

LR = (1e-4, 1e-1)  # important
DROP = (0.0, 0.3)  # unimportant
SIDE = 3


def spaced(low: float, high: float, n: int, log: bool) -> list[float]:
    """Cell centres of n equal cells, as a grid over the range would place them."""
    f = math.log10 if log else float
    points = [f(low) + (f(high) - f(low)) * (i + 0.5) / n for i in range(n)]
    return [float(f"{10**p if log else p:.3g}") for p in points]


def sweep(method: str, seed: int, quick: bool) -> dict:
    """The W&B sweep file of one search: the grid's values or random's distributions."""
    fixed = {
        "dataset": "fashion_mnist",
        "model_name": "test_convnext",
        "num_epochs": 1,
        "max_train_samples": 500 if quick else 4000,
        "report_to": "none",
        "seed": seed,
    }
    if method == "grid":
        searched = {
            "learning_rate": {"values": spaced(*LR, SIDE, True)},
            "drop_rate": {"values": spaced(*DROP, SIDE, False)},
        }
    else:
        searched = {
            "learning_rate": {"distribution": "log_uniform_values", "min": LR[0], "max": LR[1]},
            "drop_rate": {"min": DROP[0], "max": DROP[1]},
        }
    return {
        "method": method,
        "metric": {"name": "val_accuracy", "goal": "maximize"},
        "run_cap": SIDE * SIDE,
        "parameters": {**searched, **{k: {"value": v} for k, v in fixed.items()}},
    }


def search(method: str, seed: int, folder: Path, quick: bool) -> dict:
    """One search (resumable: a finished one is read back, an interrupted sweep resumes)."""
    from recipes.search.engine import SweepOptions, run_stage
    from recipes.search.spec import build_spec

    def run() -> dict:
        spec = build_spec(sweep(method, seed, quick), method)
        study = run_stage(spec, folder, SweepOptions(seed=seed))
        trials = [{**t.user_attrs["values"], "value": t.value}
                  for t in study.trials if t.value is not None]  # fmt: skip
        return {"method": method, "seed": seed, "trials": trials,
                "best": max(t["value"] for t in trials),
                "distinct_lrs": len({t["learning_rate"] for t in trials})}  # fmt: skip

    return common.resumable(folder.with_name(folder.name + "-done"), run)


def run(out: Path, work: Path, quick: bool = False) -> None:
    """Both searches for every seed; the spread of the best each finds, and one seed drawn."""
    seeds = range(2) if quick else range(10)
    rows = [search(m, s, work / f"{m}-{s}", quick) for s in seeds for m in ("grid", "random")]
    draw(rows, out / "grid_vs_random.png")
    common.write(out, "grid_vs_random", summary(rows), rows)


def summary(rows: list[dict]) -> str:
    """Best validation accuracy and distinct LRs per method; how often random beat the grid."""
    by = {m: [r for r in rows if r["method"] == m] for m in ("grid", "random")}
    lines = [
        [
            m,
            common.spread(r["best"] for r in rs),
            f"{statistics.median(r['best'] for r in rs):.4f}",
            f"{statistics.mean(r['distinct_lrs'] for r in rs):.1f}",
        ]
        for m, rs in by.items()
    ]
    pairs = list(zip(by["grid"], by["random"], strict=True))
    wins = sum(r["best"] > g["best"] for g, r in pairs)
    ties = sum(r["best"] == g["best"] for g, r in pairs)
    header = ["search (9 trials)", "best val accuracy", "median", "distinct LRs tried"]
    return common.table(header, lines) + (
        f"\nRandom search found the better model in {wins} of {len(pairs)} seeds ({ties} ties).\n"
    )


def draw(rows: list[dict], path: Path) -> None:
    """Left: the best accuracy each search found, per seed; right: seed 0's trials."""
    plt = common.pyplot()
    fig, (best_ax, grid_ax, rand_ax) = plt.subplots(1, 3, figsize=(14, 4))
    for x, method in enumerate(("grid", "random")):
        best = [r["best"] for r in rows if r["method"] == method]
        best_ax.scatter([x] * len(best), best, alpha=0.6)
        best_ax.plot([x - 0.2, x + 0.2], [statistics.median(best)] * 2, color="black")
    best_ax.set_xticks([0, 1], ["grid 3x3", "random 9"])
    best_ax.set(ylabel="best val accuracy of the search", title="Over the search seeds")
    for ax, method in ((grid_ax, "grid"), (rand_ax, "random")):
        first = next(r for r in rows if r["method"] == method)
        trials = first["trials"]
        points = ax.scatter([t["learning_rate"] for t in trials], [t["drop_rate"] for t in trials],
                            c=[t["value"] for t in trials], cmap="viridis", s=80)  # fmt: skip
        ax.set(xscale="log", xlabel="learning_rate (important)", ylabel="drop_rate (unimportant)",
               title=f"{method}, seed 0: {first['distinct_lrs']} LRs tried")  # fmt: skip
        fig.colorbar(points, ax=ax, label="val accuracy")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)

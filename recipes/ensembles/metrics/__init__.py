"""`evaluate` metric modules shipped with the package, so that scoring works offline."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from recipes.core import runs
from recipes.core.errors import RecipeError
from recipes.core.hub import hub_offline, hub_reachable

METRICS_DIR = Path(__file__).parent
# name -> what it measures; each is a folder METRICS_DIR/name/name.py loadable by evaluate.load.
SHIPPED = {
    "accuracy": "top-1 accuracy from class probabilities",
    "nll": "negative log-likelihood of the true class",
    "ece": "expected calibration error, 15 confidence bins",
}
DEFAULT_METRICS = ("accuracy", "nll", "ece")
SPLITS = ("validation", "test")
METRICS_HELP = "shipped (accuracy, nll, ece), a local metric folder, or a hub metric (online only)"


def list_metrics() -> dict[str, str]:
    return dict(sorted(SHIPPED.items()))


def metric_source(name: str) -> str:
    """A shipped name, a local metric folder, or (online only) a hub metric name."""
    if name in SHIPPED:
        return str(METRICS_DIR / name)
    if Path(name).is_dir():
        return str(Path(name).resolve())
    if hub_offline() or not hub_reachable():
        raise RecipeError(
            f"metric {name!r} would come from the Hugging Face hub, which is offline; use a "
            f"shipped metric ({', '.join(sorted(SHIPPED))}) or a local metric folder"
        )
    return name


def wants_probabilities(module) -> bool:
    """Shipped metrics take probability rows; a metric with a scalar `predictions` takes labels."""
    import datasets

    features = module.features if isinstance(module.features, dict) else module.features[0]
    return not isinstance(features["predictions"], datasets.Value)


class Scorer:
    """Metrics combined with `evaluate.combine`: probabilities to some, argmax labels to others."""

    def __init__(self, names: list[str] | tuple[str, ...] = DEFAULT_METRICS):
        import evaluate

        modules = [evaluate.load(metric_source(n), keep_in_memory=True) for n in names]
        self.on_probs = evaluate.combine([m for m in modules if wants_probabilities(m)])
        self.on_labels = evaluate.combine([m for m in modules if not wants_probabilities(m)])

    def __call__(self, probs: np.ndarray, labels: np.ndarray) -> dict:
        results = self.on_probs.compute(predictions=probs, references=labels)
        if self.on_labels.evaluation_modules:
            results.update(self.on_labels.compute(predictions=probs.argmax(-1), references=labels))
        return results


def table(report: dict, costs: dict[str, float | None]) -> str:
    """Markdown table: one row per member or combination, each metric per split, training cost."""
    first = next(iter(report["validation"].values()))
    metrics = [k for k, v in first.items() if isinstance(v, float | int)]
    short = {"validation": "val", "test": "test"}
    header = ["model", *(f"{short[s]} {m}" for s in SPLITS for m in metrics), "train s"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in report["validation"]:
        cells = [f"{report[s][row][m]:.4f}" for s in SPLITS for m in metrics]
        cost = costs.get(row)
        lines.append(
            "| " + " | ".join([row, *cells, "-" if cost is None else f"{cost:.1f}"]) + " |"
        )
    return "\n".join(lines)


def plot_reliability(rows: dict, out: Path) -> Path:
    """Reliability diagram: accuracy against confidence per bin; the diagonal is calibrated."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], "k:", label="calibrated")
    for name, metrics in rows.items():
        bins = metrics["ece_bins"]
        seen = [i for i, count in enumerate(bins["count"]) if count]
        x = [bins["confidence"][i] for i in seen]
        ax.plot(
            x, [bins["accuracy"][i] for i in seen], "o-", label=f"{name}: ECE {metrics['ece']:.3f}"
        )
    ax.set(
        xlabel="confidence", ylabel="accuracy", title="reliability (test)", xlim=(0, 1), ylim=(0, 1)
    )
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def write_report(out: Path, report: dict, costs: dict) -> str:
    """results.json, table.md and (with ece) reliability.png in the output folder."""
    out.mkdir(parents=True, exist_ok=True)
    runs.write_json(out / runs.RESULTS_FILE, {**report, "train_seconds": costs})
    text = table(report, costs)
    (out / "table.md").write_text(text + "\n")
    test = report["test"]
    if "ece_bins" in next(iter(test.values())):
        shown = {k: v for k, v in test.items() if k.startswith(("best member", "ensemble", "soup"))}
        plot_reliability(shown, out / "reliability.png")
    return text

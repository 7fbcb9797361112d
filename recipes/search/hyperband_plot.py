"""A Hyperband sweep drawn: each trial's metric by epoch, where it stopped, the band thresholds."""

from __future__ import annotations

import math
from pathlib import Path

import optuna
from optuna.trial import TrialState

from recipes.core.plots import pyplot
from recipes.search.hyperband import history
from recipes.search.spec import SweepSpec


def band_marks(spec: SweepSpec, study: optuna.Study) -> list[tuple[int, float]]:
    """(band, threshold) for each band some trial reached, in the metric's own sign."""
    sign = -1.0 if spec.goal == "maximize" else 1.0
    histories = [h for t in study.get_trials(deepcopy=False) if (h := history(t, sign))]
    longest = max(map(len, histories), default=0)
    thresholds = spec.hyperband.thresholds(histories)
    return [(band, sign * threshold)
            for band, threshold in zip(spec.hyperband.bands, thresholds, strict=True)
            if band <= longest and math.isfinite(threshold)]  # fmt: skip


def plot_hyperband(spec: SweepSpec, study: optuna.Study, out: Path) -> Path:
    """One line per trial (red x where W&B's rule stopped it); black bars: each band's threshold
    over all trials that reached it, the value a trial had to beat there to go on."""
    plt = pyplot()
    sign = -1.0 if spec.goal == "maximize" else 1.0
    trials = [t for t in study.get_trials(deepcopy=False) if t.intermediate_values]
    histories = [history(t, sign) for t in trials]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for trial, values in zip(trials, histories, strict=True):
        epochs = range(1, len(values) + 1)
        pruned = trial.state == TrialState.PRUNED
        ax.plot(epochs, [sign * v for v in values], color="tab:gray" if pruned else "tab:blue",
                alpha=0.5 if pruned else 0.9, lw=1)  # fmt: skip
        if pruned:
            ax.plot(len(values), sign * values[-1], "x", color="tab:red", ms=6)
    for band, threshold in band_marks(spec, study):
        ax.axvline(band, color="k", ls=":", lw=0.8)
        ax.plot(band, threshold, "_", color="k", ms=22, mew=2.5)
    stopped = sum(t.state == TrialState.PRUNED for t in trials)
    title = f"{spec.name}: {len(trials)} trials, {stopped} stopped (x); bars: band thresholds"
    ax.set(xlabel="epoch (W&B's iteration)", ylabel=spec.metric, title=title)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out

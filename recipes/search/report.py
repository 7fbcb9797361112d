"""A finished sweep: the table of trials, the best config, plots and edge-of-range warnings."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from recipes.core.files import write_atomic
from recipes.search.hyperband_plot import plot_hyperband
from recipes.search.params import is_log
from recipes.search.spec import SweepSpec
from recipes.search.trial import SKIPPED, as_best


def trial_rows(spec: SweepSpec, study: optuna.Study) -> list[dict[str, Any]]:
    """One row per trial: state, metric (last reported for pruned), epochs, time, values, error."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        if SKIPPED in t.user_attrs:
            continue
        value = t.value if t.state == TrialState.COMPLETE else None
        if t.state == TrialState.PRUNED and t.intermediate_values:
            value = t.intermediate_values[max(t.intermediate_values)]
        seconds = (
            (t.datetime_complete - t.datetime_start).total_seconds()
            if t.datetime_complete
            else None
        )
        rows.append(
            {
                "trial": t.number,
                "state": t.state.name.lower(),
                spec.metric: value,
                "epochs": t.user_attrs.get("epochs"),
                "seconds": seconds,
                **t.user_attrs.get("values", {}),
                "error": t.user_attrs.get("error", ""),
                "host": t.user_attrs.get("host"),
                "run_dir": t.user_attrs.get("run_dir"),
            }
        )
    return rows


def trial_folders(rows: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Host -> the run folders of its trials: machines of one sweep share no file system."""
    where: dict[str, list[str]] = {}
    for r in rows:
        if r["run_dir"] and r["run_dir"] not in where.get(r["host"], []):
            where.setdefault(r["host"], []).append(r["run_dir"])
    return where


def edge_warnings(spec: SweepSpec, best: dict[str, Any], label: str = "best") -> list[str]:
    """The lecture's check: a best value on the edge of its range means the range was too small."""
    out = []
    for param in spec.params:
        value, choices = best.get(param.name), getattr(param.distribution, "choices", ())
        numeric = [c for c in choices if isinstance(c, int | float) and not isinstance(c, bool)]
        if param.bounds:
            low, high = param.bounds
            scale = math.log if param.log else float
            where = (scale(value) - scale(low)) / ((scale(high) - scale(low)) or 1.0)
        elif len(numeric) >= 3 and len(numeric) == len(choices):
            low, high = min(numeric), max(numeric)
            where = 0.0 if value == low else 1.0 if value == high else 0.5
        else:
            continue
        if where <= 0.1 or where >= 0.9:
            side = "lower" if where <= 0.1 else "upper"
            out.append(
                f"{label} {param.name}={value:.4g} lies at the {side} edge of the searched range "
                f"[{low:.4g}, {high:.4g}]: widen the range and search again"
            )
    return out


def plot_sweep(spec: SweepSpec, rows: list[dict[str, Any]], folder: Path) -> list[Path]:
    """The metric against each parameter (log axes for log ranges) and the optimisation history."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [r for r in rows if r[spec.metric] is not None]
    fig, axes = plt.subplots(
        1, max(len(spec.params), 1), figsize=(4 * max(len(spec.params), 1), 3.4), squeeze=False
    )
    for ax, param in zip(axes[0], spec.params, strict=False):
        xs = [r[param.name] for r in done]
        if any(isinstance(x, str | bool) or x is None for x in xs):
            xs = [str(x) for x in xs]
        colors = ["tab:blue" if r["state"] == "complete" else "tab:gray" for r in done]
        ax.scatter(xs, [r[spec.metric] for r in done], c=colors)
        ax.set(xlabel=param.name, ylabel=spec.metric, xscale="log" if is_log(param) else "linear")
    fig.suptitle(f"{spec.name}: {spec.metric} per trial (gray: pruned)")
    fig.tight_layout()
    fig.savefig(folder / "metric_vs_params.png", dpi=90)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    values = [r[spec.metric] for r in rows if r["state"] == "complete"]
    best = max if spec.goal == "maximize" else min
    ax.plot(range(len(values)), values, "o", label="trial")
    ax.plot(
        range(len(values)),
        [best(values[: i + 1]) for i in range(len(values))],
        "-",
        label="best so far",
    )
    ax.set(xlabel="finished trial", ylabel=spec.metric, title=f"{spec.name}: optimisation history")
    ax.legend()
    fig.tight_layout()
    fig.savefig(folder / "history.png", dpi=90)
    plt.close(fig)
    return [folder / "metric_vs_params.png", folder / "history.png"]


def summarize(spec: SweepSpec, study: optuna.Study, folder: Path) -> dict[str, Any]:
    """Print and save the best trial with its config, the table of trials, plots and warnings."""
    rows = trial_rows(spec, study)
    columns = list(dict.fromkeys(k for r in rows for k in r))
    table = io.StringIO(newline="")
    csv.DictWriter(table, columns).writeheader()
    csv.DictWriter(table, columns).writerows(rows)
    write_atomic(folder / "trials.csv", table.getvalue())
    print(f"{'trial':>5} {'state':<9} {spec.metric:>12} {'epochs':>6}  values")
    for r in rows:
        metric = "-" if r[spec.metric] is None else f"{r[spec.metric]:.4f}"
        values = " ".join(f"{p.name}={r.get(p.name)}" for p in spec.params)
        epochs = r["epochs"] or "-"
        print(f"{r['trial']:>5} {r['state']:<9} {metric:>12} {epochs:>6}  {values} {r['error']}")
    for host, folders in trial_folders(rows).items():
        print(f"trial folders on {host}: {', '.join(folders)}")
    summary: dict[str, Any] = {
        "sweep": spec.name,
        "metric": spec.metric,
        "goal": spec.goal,
        "trials": rows,
    }
    if any(r["state"] == "complete" for r in rows):
        best = study.best_trial
        summary["best"] = as_best(best)
        summary["warnings"] = edge_warnings(spec, best.user_attrs["values"])
        summary["plots"] = [str(p) for p in plot_sweep(spec, rows, folder)]
        if spec.hyperband:
            summary["plots"].append(str(plot_hyperband(spec, study, folder / "hyperband.png")))
        print(
            f"best: trial {best.number}, {spec.metric} {best.value:.4f}, config "
            f"{best.user_attrs.get('host')}:{best.user_attrs['run_dir']}/config.yaml"
        )
        print(
            "  recipes train "
            + " ".join(([spec.recipe] if spec.recipe else []) + best.user_attrs["args"])
        )
        for warning in summary["warnings"]:
            print(f"warning: {warning}")
    else:
        print(f"no trial of {spec.name} finished; see the error column above")
    write_atomic(folder / "summary.json", json.dumps(summary, indent=2, default=str))
    return summary

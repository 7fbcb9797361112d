"""The report of `recipes tune`: each step's finding and decision, with its tables and plots."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from recipes.core.report import Section, write_report
from recipes.tuning.champion import Z
from recipes.tuning.plan import load_plan

if TYPE_CHECKING:
    from recipes.tuning.procedure import Stage


def refine_rule() -> str:
    """How a refine stage set its ranges, with the hard limits it kept."""
    from recipes.search.refine import LIMITS

    limits = ", ".join(f"{name} [{low:g}, {high:g}]" for name, (low, high) in LIMITS.items())
    return (
        "Ranges narrowed around the values chosen before and the best quarter of the trials "
        "before (at least 2), inside their range; an edge moves out (at most a decade on a log "
        f"scale) only when the chosen value lies on it; hard limits: {limits}."
    )


def trial_table(summary: dict, limit: int = 10) -> list[dict]:
    done = [r for r in summary["trials"] if r.get("val_accuracy") is not None]
    done.sort(key=lambda r: r["val_accuracy"], reverse=True)
    keep = ("trial", "state", "val_accuracy", "epochs", "seconds", "learning_rate", "weight_decay")
    return [{k: r.get(k) for k in keep} for r in done[:limit]]


def stage_section(stage: Stage) -> Section:
    """A sweep stage: its choice, warnings, the curves' diagnosis, table and plots."""
    s, chosen = stage.summary, stage.champion
    step = "Step 4: coarse search" if stage.name == "coarse" else f"Step 5: {stage.name}"
    text = [f"{len(s['trials'])} trials, metric {s['metric']} ({s['goal']})."]
    images = [stage.folder / "metric_vs_params.png", stage.folder / "history.png"]
    values = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                       for k, v in chosen["values"].items())  # fmt: skip
    text.append(f"Chosen: trial {chosen['trial']}, {s['metric']} {chosen['value']:.4f} "
                f"({values}); trial 0 ran the values to beat, and a better trial is chosen "
                f"only when it leads by {Z:g} standard errors of the difference.")  # fmt: skip
    images.append(Path(chosen["run_dir"]) / "curves.png")
    if stage.name != "coarse":
        text.append(refine_rule())
    text += [f"Warning: {w}" for w in s.get("warnings", [])]
    text += [f"Step 6, learning curves of the chosen trial: {f}" for f in s.get("findings", [])]
    return Section(step, text, [trial_table(s)], images)


def write(folder, recipe, budget, checks, stages, scores, notes, clock) -> None:
    """report.md and report.html: every step's finding and decision, tables and plots."""
    plan = load_plan(folder)
    planned = plan.planned if plan else {}
    timing = [{"step": k, "planned": round(planned[k], 1) if k in planned else None,
               "seconds": round(v, 1)} for k, v in clock.steps.items()]  # fmt: skip
    timing.append({"step": "total", "planned": budget.seconds,
                   "seconds": round(sum(clock.steps.values()), 1)})  # fmt: skip
    sections = [Section("Set-up", [f"Recipe: {recipe or 'the embedded digits default'}; "
                                   f"budget {budget.text}."], [timing])]  # fmt: skip
    rows = [{"check": c["name"], "passed": c["passed"], "finding": c["finding"],
             "next": c["action"]} for c in checks.values()]  # fmt: skip
    images = sorted((folder / "checks").glob("*.png"))
    sections.append(Section("Steps 1-3: initial loss, overfit, LR range test", [], [rows], images))
    sections += [stage_section(stage) for stage in stages]
    sections.append(Section("Step 7: decisions", notes or ["none"]))
    if scores is not None:
        table = [{"model": name, **{k: v for k, v in m.items() if k != "ece_bins"}}
                 for name, m in scores.items()]  # fmt: skip
        text = [
            "The chosen trial's arguments (the recipe's own warmup), trained for as many updates "
            "as the budget left affords, the last epoch part-way (a budget in trials: twice the "
            "best trial's epochs); test split, never searched on."
        ]
        curves = [folder / "final" / "curves.png"]
        sections.append(Section("Final model", text, [table], curves))
    write_report(folder, "recipes tune", sections)

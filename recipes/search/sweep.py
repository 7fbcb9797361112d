"""A whole sweep: the search, its summary and the refine stage; and what --dry-run shows."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import optuna

from recipes.core.locks import folder_lock
from recipes.search.agent import agent_command
from recipes.search.engine import UNTIL_STOPPED, SweepOptions, budget, last_to_finish, run_stage
from recipes.search.params import describe, edge_values
from recipes.search.refine import refine
from recipes.search.report import summarize
from recipes.search.spec import SweepSpec, grid_points, load_sweep, trial_args


def describe_pruner(spec: SweepSpec) -> str:
    if spec.hyperband:
        rule = spec.hyperband
        bands = ", ".join(map(str, rule.bands[:6])) + (", ..." if len(rule.bands) > 6 else "")
        kind = "strict" if rule.strict else "best so far"
        return f"W&B hyperband (epochs {bands}; eta {rule.eta:g}; {kind})"
    if spec.optuna_hyperband:
        return f"Optuna HyperbandPruner {spec.optuna_hyperband}"
    return "none"


def plan_lines(spec: SweepSpec, options: SweepOptions) -> list[str]:
    """What a sweep would run, training nothing: the method, the points or ranges, the agent."""
    target = budget(spec, options.trials)
    runs = (
        "until stopped (no run_cap: as wandb agent, Ctrl-C ends it)"
        if target == UNTIL_STOPPED
        else f"{target} trials"
    )
    pruner = describe_pruner(spec)
    lines = [
        f"sweep {spec.name}: method {spec.method}, metric {spec.metric} ({spec.goal}), "
        f"{runs}, pruner {pruner}",
        "fixed: " + (" ".join(trial_args(spec, {})) or "(none)"),
    ]
    if spec.method == "grid":
        points = grid_points(spec)
        capped = f", {target} run (run_cap)" if target < len(points) else ""
        lines.append(f"grid: {len(points)} combinations{capped}")
        for i, point in enumerate(points, 1):
            lines.append(f"  {i:3d}. " + " ".join(f"{k}={v}" for k, v in point.items()))
    else:
        lines.append("search space:")
        lines += [f"  {describe(param)}" for param in spec.params]
    first = {param.name: edge_values(param)[0] for param in spec.params}
    command = agent_command(spec.raw, {**spec.fixed, **first})
    lines.append("wandb agent runs, e.g.: " + " ".join(command))
    if "command" not in spec.raw and "program" not in spec.raw:
        lines.append(
            "note: no program or command, so wandb agent would run `python --key=value ...` "
            "with no program (here the recipe runs as usual); for W&B add: "
            'command: ["${env}", "${interpreter}", "-m", "recipes", "train", "${args}"]'
        )
    if options.refine or "refine" in spec.raw:
        lines.append("then: a refine stage around the top trials, trained longer (refine.yaml)")
    return lines


def sweep(
    path: str | Path, options: SweepOptions | None = None, output_dir: str | Path | None = None
) -> optuna.Study:
    """Run a W&B sweep file here (in sweeps/NAME), summarise it, then refine it if asked."""
    options = options or SweepOptions()
    spec = load_sweep(path)
    folder = Path(output_dir or Path("sweeps") / spec.name)
    with folder_lock(folder, "sweep folder"):
        return sweep_in(spec, folder, options)


def sweep_in(spec: SweepSpec, folder: Path, options: SweepOptions) -> optuna.Study:
    """The sweep's stages in its folder (this machine's part of a shared study)."""
    started = datetime.now()  # Optuna's trial times are local and naive too
    study = run_stage(spec, folder, options)
    if not last_to_finish(study, started):
        print(f"sweep {spec.name}: trials ended here; the process that ends the last trial "
              "writes the summary")  # fmt: skip
        return study
    summarize(spec, study, folder)
    if options.refine or "refine" in spec.raw:
        fine, study = refine(spec, study, folder, options)
        summarize(fine, study, folder / "refine")
    return study

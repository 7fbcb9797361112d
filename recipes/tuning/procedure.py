"""The lecture's seven steps for choosing hyperparameters, as one resumable command."""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from recipes.core import runs
from recipes.core.config import RecipeConfig, parse_config
from recipes.core.errors import RecipeError
from recipes.core.files import write_atomic
from recipes.core.locks import folder_lock
from recipes.ensembles.ensemble import score_saved
from recipes.training.route import run_recipe
from recipes.tuning.budget import CHECKS, COARSE, FINAL, TIMING, Budget, Clock, refine_step
from recipes.tuning.champion import champion
from recipes.tuning.check_report import CHECKS_FILE
from recipes.tuning.coarse import StageSizes, coarse_sweep, first_trial_note, recipe_point
from recipes.tuning.final import final_config
from recipes.tuning.inputs import check_recipe
from recipes.tuning.plan import Plan, load_plan, make_plan, remeasured, save_plan, time_run
from recipes.tuning.prune import prune_weights, trial_folders
from recipes.tuning.refine_time import recipe_confirmed, refine_trials
from recipes.tuning.report import write

if TYPE_CHECKING:
    import optuna

    from recipes.search.spec import SweepSpec

LONGER = ("still_improving", "underfitting", "plateau")  # findings that send us back to step 5


@dataclass(frozen=True)
class TuneOptions:
    """What `recipes tune` was asked for, besides the recipe."""

    budget: str = "5m"
    ensemble: int = 1
    output_dir: str | None = None
    report_to: str = "none"
    overwrite: bool = False


def identity(recipe: str | None, args: TuneOptions) -> dict[str, Any]:
    """What makes a tune folder: the recipe's content and the budget."""
    text = Path(recipe).read_text() if recipe else ""
    return {
        "recipe": recipe,
        "recipe_sha256": hashlib.sha256(text.encode()).hexdigest(),
        "budget": args.budget,
        "ensemble": args.ensemble,
    }


def open_folder(folder: Path, recipe: str | None, args: TuneOptions) -> None:
    """Continue a folder made by the same recipe and budget; refuse one made by another."""
    marker = folder / "tune.json"
    mine = identity(recipe, args)
    if marker.is_file() and not args.overwrite:
        theirs = json.loads(marker.read_text())
        if theirs != mine:
            changed = ", ".join(k for k in mine if mine[k] != theirs.get(k))
            raise RecipeError(
                f"tune folder {folder} was made by a different recipe or budget ({changed}); "
                "use --output_dir for a new folder or --overwrite"
            )
    if args.overwrite and folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_atomic(marker, json.dumps(mine, indent=2))


def checks_step(config: RecipeConfig, folder: Path) -> dict[str, dict]:
    """Steps 1-3 as `recipes check` runs them; a finished checks.json is reused."""
    saved = folder / "checks" / CHECKS_FILE
    if not saved.is_file():
        print(check_recipe(config, saved.parent).table())
    return {c["name"]: c for c in json.loads(saved.read_text())["checks"]}


def blocking_failure(checks: dict[str, dict]) -> dict | None:
    """A failed initial-loss or overfit check, or an LR sweep that found no working LR, stops."""
    for name in ("initial_loss", "overfit"):
        if not checks[name]["passed"]:
            return checks[name]
    if checks["lr_range"]["values"]["suggested_lr"] is None:
        return checks["lr_range"]
    return None


def plan_search(
    recipe: str | None, config: RecipeConfig, folder: Path, clock: Clock, notes: list[str]
) -> tuple[StageSizes, Plan | None]:
    """The search stages' sizes: counted for a budget in trials, planned from a timed run for
    one in wall time (kept in plan.json across restarts)."""
    full = config.data.max_train_samples
    if clock.budget.seconds is None:
        return StageSizes(*clock.budget.split(), full=full), None
    plan = load_plan(folder)
    if plan is None:
        with clock.step(TIMING):
            timing = time_run(recipe, config, folder / "timing")
        plan = make_plan(clock.left(), timing, config.training.num_epochs)
        save_plan(folder, plan)
    if not plan.fits():
        notes.append(
            f"warning: --budget {clock.budget.text} is below what this recipe needs here: the "
            f"smallest plan takes about {sum(plan.planned.values()):.0f}s (measured), so the run "
            "will overrun it"
        )
        print(notes[-1], flush=True)
    notes.append(
        f"plan from a timed run: {plan.startup_seconds:.1f}s per run, {plan.epoch_seconds:.1f}s "
        f"per epoch of {plan.train_size} images, {plan.eval_seconds:.1f}s per evaluation -> "
        f"{plan.coarse} coarse trials on {plan.fraction:.0%} of the data, {plan.refine} refine "
        f"trials of {plan.refine_epochs} epoch(s) on {plan.refine_fraction:.0%}"
    )
    sizes = StageSizes(plan.coarse, plan.refine, plan.samples(plan.fraction),
                       plan.samples(plan.refine_fraction), full, plan.refine_epochs)  # fmt: skip
    return sizes, plan


@dataclass
class Stage:
    """One sweep of the procedure (coarse, refine, refine again), its summary and its choice."""

    name: str
    folder: Path
    summary: dict
    champion: dict  # the values it hands on (see champion.py), as the summary's `best`


def finished_rows(stages: list[Stage]) -> list[dict]:
    """Every finished trial's summary row, for timing the trials still to come."""
    return [r for s in stages for r in s.summary["trials"] if r["state"] == "complete"]


def ensemble_members(final: Path, stages: list[Stage], count: int) -> dict[str, Path]:
    """The final model plus the models of the best other finished trials."""
    rows = [
        (row["val_accuracy"], stage.folder / "trials" / f"trial_{row['trial']:03d}", stage.name)
        for stage in stages
        for row in stage.summary["trials"]
        if row["state"] == "complete"
    ]
    rows.sort(key=lambda r: r[0], reverse=True)
    members = {"final": final / "model"}
    for _, run_dir, name in rows[: max(0, count - 1)]:
        members[f"{name}-{run_dir.name}"] = run_dir / "model"
    return members


def chosen_stage(
    name: str, spec: SweepSpec, study: optuna.Study, folder: Path, choice: dict
) -> Stage:
    """A finished stage, its edge warnings about the values it hands on: the incumbent's when no
    challenger cleared the noise (champion.py), not the best trial's."""
    from recipes.search.report import edge_warnings, summarize

    summary = summarize(spec, study, folder)
    summary["warnings"] = edge_warnings(spec, choice["values"], "chosen")
    return Stage(name, folder, summary, choice)


def search_stages(
    raw: dict, first: dict, folder: Path, clock: Clock, notes: list[str], plan: Plan | None
) -> list[Stage]:
    """Steps 4, 5, 6 and 7: coarse (`first`: its first trial's values), refine around the
    stage's choice, read the chosen run's curves, refine again if they ask."""
    from recipes.search.engine import SweepOptions, run_stage
    from recipes.search.refine import refine
    from recipes.search.spec import build_spec
    from recipes.tuning.curves import diagnose, load_history

    spec, stage_folder, stages = build_spec(raw, raw["name"]), folder / "coarse", []
    with clock.step(COARSE):
        options = SweepOptions(qmc=True, first=(first,) if first else ())
        study = run_stage(spec, stage_folder, options)
        choice, why = champion(study, first)
        stages.append(chosen_stage("coarse", spec, study, stage_folder, choice))
    notes.append(f"coarse: {why}")
    if recipe_confirmed(raw, first, choice, folder, plan, notes):
        return stages
    for round_ in (1, 2):  # epochs: coarse 1 -> refine 3 (or fewer) -> again twice that
        todo = refine_trials(raw["refine"], round_, finished_rows(stages), clock, plan, notes)
        if todo < 1:
            break
        with clock.step(refine_step(round_)):
            options = SweepOptions(qmc=True)
            spec, study = refine(spec, study, stage_folder, options, todo, choice["values"])
            stage_folder = stage_folder / "refine"
            choice, why = champion(study, choice["values"])
            stages.append(chosen_stage(f"refine {round_}", spec, study, stage_folder, choice))
        notes.append(f"refine round {round_}: {why}")
        findings = diagnose(load_history(choice["run_dir"]))
        stages[-1].summary["findings"] = [str(f) for f in findings]
        longer = [f.rule for f in findings if f.rule in LONGER]
        if not longer or clock.budget.trials is not None:
            why = "the budget is in trials" if longer else "the curves ask for nothing more"
            notes.append(f"after refine round {round_}: stop searching ({why})")
            break
        notes.append(f"after refine round {round_}: {', '.join(longer)} -> back to step 5, "
                     "around the chosen values, trained twice as long")  # fmt: skip
    return stages


def final_step(
    recipe: str | None,
    args: TuneOptions,
    folder: Path,
    stages: list[Stage],
    plan: Plan | None,
    clock: Clock,
    notes: list[str],
) -> tuple[dict[str, Path], dict]:
    """The chosen values trained on all the data for the time left, then tested (with the
    ensemble's other members when asked)."""
    best = stages[-1].champion
    print(f"final model: the chosen trial ({best['value']:.4f}) trained longer", flush=True)
    speed = plan and remeasured(plan, finished_rows(stages))  # as the trials ran, not timed
    left = clock.left_at(FINAL)
    final = final_config(recipe, best, folder, speed, left)
    if speed:
        t = final.training
        notes.append(
            f"final model: {t.max_steps} updates in {t.num_epochs} epochs, "
            f"{speed.epoch_seconds:.1f}s each as the search trials ran (the timed run said "
            f"{plan.epoch_seconds:.1f}s), in the {left:.0f}s left; its epochs kept to "
            f"{t.max_seconds:.0f}s (max_seconds)"
        )
    made = run_recipe(final)
    if made.get("planned_steps", made["steps"]) > made["steps"]:
        notes.append(f"final model: the machine ran slower than the trials had, so it made "
                     f"{made['steps']} of its {made['planned_steps']} updates, its LR schedule "
                     "compressed to end on time")  # fmt: skip
    members = ensemble_members(folder / "final", stages, args.ensemble)
    return members, score_saved(members, final.data)


def tune(recipe: str | None = None, args: TuneOptions | None = None) -> int:
    """Run (or continue) the procedure; 0 when a final model was trained, 1 when a check failed."""
    args = args or TuneOptions()
    budget = Budget.parse(args.budget)
    config = parse_config(recipe, ["--report_to", args.report_to])
    folder = Path(args.output_dir or Path("runs") / f"tune-{runs.run_name(config)}")
    with folder_lock(folder, "tune folder"):
        open_folder(folder, recipe, args)
        return procedure(recipe, args, config, folder, budget)


def procedure(
    recipe: str | None, args: TuneOptions, config: RecipeConfig, folder: Path, budget: Budget
) -> int:
    """The seven steps in `folder`, continuing what an earlier start left."""
    clock, notes = Clock(folder, budget), []
    print("steps 1-3: initial loss, overfit a small sample, LR range test", flush=True)
    with clock.step(CHECKS):
        checks = checks_step(config, folder)
    failure = blocking_failure(checks)
    if failure is not None:
        notes.append(f"stopped at {failure['name']}: {failure['finding']} -> {failure['action']}")
        write(folder, recipe, budget, checks, [], None, notes, clock)
        print(notes[-1])
        return 1
    lr, lr_max = (checks["lr_range"]["values"][k] for k in ("suggested_lr", "lr_at_min"))
    print(f"steps 4-7: coarse search around lr {lr:.2g}, refine, learning curves", flush=True)
    sizes, plan = plan_search(recipe, config, folder, clock, notes)
    raw = coarse_sweep(recipe, (lr, lr_max), sizes, config.training, args.report_to)
    write_atomic(folder / "coarse.yaml", yaml.safe_dump(raw, sort_keys=False))
    first = recipe_point(raw, config.training)
    notes.append(first_trial_note(raw, first, config.training))
    stages = search_stages(raw, first, folder, clock, notes, plan)
    with clock.step(FINAL):
        members, scores = final_step(recipe, args, folder, stages, plan, clock, notes)
    kept = {m.parent.resolve() for m in members.values()}  # not final/: it resumes
    prune_weights([*trial_folders(s.folder for s in stages), folder / "timing"], kept)
    write(folder, recipe, budget, checks, stages, scores, notes, clock)
    top = scores.get("ensemble", scores["final"])
    print(f"test accuracy {top['accuracy']:.4f}, NLL {top['nll']:.4f}, ECE {top['ece']:.4f}")
    print(f"report: {folder / 'report.html'}; final model: {folder / 'final' / 'model'}")
    return 0

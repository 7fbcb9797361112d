"""An ensemble's members (from seeds, a sweep, snapshots or folders), scored, then saved."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import yaml

from recipes.core import runs
from recipes.core.arguments import DataArguments
from recipes.core.config import RecipeConfig, parse_config
from recipes.core.data import ImageData, load_image_data
from recipes.core.errors import RecipeError
from recipes.core.models import WEIGHTS_FILE
from recipes.ensembles.ensemble import (
    Ensemble,
    build_ensemble,
    eval_loader,
    input_size,
    predict,
    save,
    score_split,
)
from recipes.ensembles.metrics import SPLITS, Scorer, write_report
from recipes.training.route import run_recipe

DATA_KEYS = ("dataset", "data_dir", "image_column", "label_column")


def run_folder(model_dir: Path) -> Path | None:
    """The run folder a saved model came from (run/model or run/snapshots/step_N)."""
    for candidate in (model_dir.parent, model_dir.parent.parent):
        if (candidate / "config.yaml").is_file():
            return candidate
    return None


def member_data(directories: list[Path], recipe: str | None) -> DataArguments:
    """The data the members were trained on, from their run folders or from --data."""
    if recipe:
        return parse_config(recipe).data
    found = {}
    for directory in directories:
        run = run_folder(directory)
        if run is None:
            raise RecipeError(f"no config.yaml beside member {directory}; pass --data RECIPE.yaml")
        saved = yaml.safe_load((run / "config.yaml").read_text())
        found[directory] = {k: saved.get(k) for k in DATA_KEYS}
    if len({json.dumps(v, sort_keys=True) for v in found.values()}) > 1:
        raise RecipeError(f"members were trained on different data {list(found.values())[:2]}...")
    return DataArguments(**found[directories[0]])


def run_seconds(model_dir: Path) -> float | None:
    """Training time of the run a member came from, from its epochs.jsonl."""
    run = run_folder(model_dir)
    history = runs.read_jsonl(run / runs.EPOCHS_FILE) if run else []
    return history[-1]["seconds"] if history else None


def add_best_member(report: dict, names: list[str]) -> None:
    """The member with the best validation accuracy, as a row of its own on every split."""
    best = max(names, key=lambda n: report["validation"][n]["accuracy"])
    for split in report:
        report[split] = {f"best member ({best})": report[split][best], **report[split]}


def score_members(
    ensemble: Ensemble, names, data: ImageData, size, combines, scorer, batch_size
) -> dict:
    """Validation and test metrics of every member and of the ensemble, one data pass per split."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    report = {}
    for split in SPLITS:
        logits, labels = predict(ensemble, eval_loader(data, split, size, batch_size), device)
        report[split] = score_split(names, logits, labels, combines, scorer)
    add_best_member(report, names)
    return report


def row_costs(report: dict, members: dict[str, Path]) -> dict[str, float | None]:
    """Training seconds behind each row: a member's run, or all distinct runs for an ensemble."""
    costs = {name: run_seconds(d) for name, d in members.items()}
    per_run = {run_folder(d): run_seconds(d) for d in members.values()}
    total = None if None in per_run.values() else sum(per_run.values())
    for row in report["validation"]:
        if row.startswith("best member ("):
            costs[row] = costs[row[len("best member (") : -1]]
        elif row not in costs:
            costs[row] = total
    return costs


def member_config(config: RecipeConfig, out: Path, index: int) -> RecipeConfig:
    """Member `index`: the same recipe with seed + index, in its own run folder."""
    seed = config.training.seed + index
    return config.replace(
        seed=seed,
        output_dir=str(out / "members" / f"seed_{seed}"),
        run_name=f"{runs.run_name(config)}-seed{seed}",
        wandb_group=config.training.wandb_group or out.name,
    )


def finished(run: Path) -> bool:
    return (run / runs.RESULTS_FILE).is_file() and (run / "model" / WEIGHTS_FILE).is_file()


def train_members(config: RecipeConfig, count: int, out: Path) -> list[Path]:
    """Members that differ only by seed; finished ones are reused, interrupted ones resume."""

    if count < 2:
        raise RecipeError(f"--members must be at least 2 for an ensemble, got {count}")
    configs = [member_config(config, out, i) for i in range(count)]
    for member in configs:
        runs.open_run_dir(member, is_main=False)  # refuses a folder made by another recipe
    for member in configs:
        if member.training.overwrite_output_dir or not finished(runs.run_dir(member)):
            run_recipe(member)
    return [runs.run_dir(c) / "model" for c in configs]


def sweep_members(sweep: Path, top: int) -> list[Path]:
    """The `top` trials of a sweep folder by validation accuracy of their last model."""
    if not sweep.is_dir():
        raise RecipeError(f"sweep folder not found: {sweep}")
    trials = [
        p.parent
        for p in sorted(sweep.rglob(runs.RESULTS_FILE))
        if (p.parent / "config.yaml").is_file() and (p.parent / "model").is_dir()
    ]
    if top < 2 or len(trials) < top:
        raise RecipeError(
            f"--top {top}: need 2 or more of the {len(trials)} finished trials in {sweep} "
            "(run folders with results.json, config.yaml and model/)"
        )
    score = {
        t: json.loads((t / runs.RESULTS_FILE).read_text()).get("val_accuracy", -1.0) for t in trials
    }
    return [t / "model" for t in sorted(trials, key=score.get, reverse=True)[:top]]


def snapshot_members(run: Path) -> list[Path]:
    """A run's snapshots (one per cycle of cosine_with_restarts), oldest first."""
    found = sorted((run / "snapshots").glob("step_*"), key=lambda p: int(p.name.split("_")[1]))
    if len(found) < 2:
        raise RecipeError(
            f"{run} has {len(found)} snapshot(s); train it with snapshot_ensemble: true, "
            "lr_scheduler: cosine_with_restarts and scheduler_kwargs: {num_cycles: 2 or more}"
        )
    return found


def named(directories: list[Path]) -> dict[str, Path]:
    """Short unique names: run/model is `run`, run/ema_model `run-ema`, a snapshot `step_N`."""
    members: dict[str, Path] = {}
    for path in directories:
        suffix = {"model": "", "best_model": "-best", "ema_model": "-ema"}.get(path.name)
        name = path.name if suffix is None else path.parent.name + suffix
        members[name if name not in members else f"{name}_{len(members)}"] = path
    return members


def score_ensemble(
    dirs: list[Path], out: Path, data_args: DataArguments, combines: list[str], scorer: Scorer,
    batch_size: int = 256,
) -> str:  # fmt: skip
    """Score every member and the ensemble on validation and test, save it to `out`; the table."""
    members = named(dirs)
    ensemble = build_ensemble(dirs, combines[0])
    data = load_image_data(data_args)
    names, size = list(members), input_size(dirs)
    report = score_members(ensemble, names, data, size, combines, scorer, batch_size)
    text = write_report(out, report, row_costs(report, members))
    save(out, members, combines[0])
    return text

"""`recipes ensemble`: members from seeds, a sweep, snapshots or folders; scored, then saved."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import torch
import yaml
from accelerate import PartialState

from recipes import runs
from recipes.config import DataArguments, RecipeConfig, parse_config
from recipes.data import ImageData, load_image_data
from recipes.ensemble import (
    COMBINE,
    Ensemble,
    build_ensemble,
    check_members,
    eval_loader,
    input_size,
    predict,
    save,
    score_split,
)
from recipes.errors import RecipeError, command_parser
from recipes.metrics import DEFAULT_METRICS, METRICS_HELP, SPLITS, Scorer, write_report
from recipes.models import WEIGHTS_FILE

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
    training = replace(
        config.training,
        seed=seed,
        output_dir=str(out / "members" / f"seed_{seed}"),
        run_name=f"{runs.run_name(config)}-seed{seed}",
        wandb_group=config.training.wandb_group or out.name,
    )
    return replace(config, training=training)


def finished(run: Path) -> bool:
    return (run / runs.RESULTS_FILE).is_file() and (run / "model" / WEIGHTS_FILE).is_file()


def train_members(config: RecipeConfig, count: int, out: Path) -> list[Path]:
    """Members that differ only by seed; finished ones are reused, interrupted ones resume."""
    from recipes.engine import train

    if count < 2:
        raise RecipeError(f"--members must be at least 2 for an ensemble, got {count}")
    configs = [member_config(config, out, i) for i in range(count)]
    for member in configs:
        runs.open_run_dir(member, is_main=False)  # refuses a folder made by another recipe
    for member in configs:
        if member.training.overwrite_output_dir or not finished(runs.run_dir(member)):
            train(member)
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


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, str | None, list[str]]:
    """Options of `recipes ensemble`; the rest are `--key value` recipe overrides."""
    recipe = argv[0] if argv and not argv[0].startswith("-") else None
    usage = (
        "recipes ensemble [RECIPE.yaml] --members N [--key value ...] | --from-sweep DIR "
        "--top K | --snapshots RUN_DIR | --models DIR DIR... [options]"
    )
    parser = command_parser("recipes ensemble", usage=usage)
    parser.add_argument("--members", type=int, help="train N members of RECIPE that differ by seed")
    parser.add_argument("--from-sweep", dest="sweep", help="take the best trials of a sweep folder")
    parser.add_argument("--top", type=int, default=3, help="how many trials of the sweep")
    parser.add_argument("--snapshots", help="a run folder whose snapshots are the members")
    parser.add_argument("--models", nargs="+", help="saved model folders as members")
    parser.add_argument("--out", help="ensemble folder")
    parser.add_argument(
        "--combine",
        nargs="+",
        default=["probs"],
        choices=sorted(COMBINE),
        help="; ".join(f"{k}: {v}" for k, v in COMBINE.items()) + " (the first is saved)",
    )
    parser.add_argument("--metrics", nargs="+", default=list(DEFAULT_METRICS), help=METRICS_HELP)
    parser.add_argument("--data", help="recipe whose data scores members saved outside run folders")
    parser.add_argument("--batch_size", type=int, default=256)
    args, overrides = parser.parse_known_args(argv[1:] if recipe else argv)
    if sum(map(bool, (args.members is not None, args.sweep, args.snapshots, args.models))) != 1:
        raise RecipeError(
            "give one source of members: RECIPE.yaml --members N, --from-sweep DIR --top K, "
            "--snapshots RUN_DIR or --models DIR DIR..."
        )
    if (overrides or recipe) and args.members is None:
        raise RecipeError("a recipe and --key value overrides only go with --members N")
    return args, recipe, overrides


def gather(
    args, recipe: str | None, overrides: list[str]
) -> tuple[list[Path], Path, DataArguments]:
    """Member folders (trained now if asked), the ensemble folder and the data to score on."""
    if args.members is not None:
        config = parse_config(recipe, overrides)
        out = Path(args.out or f"{runs.run_dir(config)}-ensemble")
        return train_members(config, args.members, out), out, config.data
    if args.sweep:
        dirs, out = sweep_members(Path(args.sweep), args.top), Path(args.sweep) / f"top{args.top}"
    elif args.snapshots:
        dirs, out = (
            snapshot_members(Path(args.snapshots)),
            Path(args.snapshots) / "snapshot_ensemble",
        )
    else:
        dirs, out = [Path(d) for d in args.models], Path("runs") / "ensemble"
    check_members(dirs)
    return dirs, Path(args.out or out), member_data(dirs, args.data)


def ensemble_command(argv: list[str]) -> None:
    """`recipes ensemble`: gather or train members, score them and the ensemble, save it."""
    args, recipe, overrides = parse_args(argv)
    scorer = Scorer(args.metrics)
    dirs, out, data_args = gather(args, recipe, overrides)
    if not PartialState().is_main_process:
        return
    members = named(dirs)
    ensemble = build_ensemble(dirs, args.combine[0])
    data = load_image_data(data_args)
    names, size = list(members), input_size(dirs)
    report = score_members(ensemble, names, data, size, args.combine, scorer, args.batch_size)
    text = write_report(out, report, row_costs(report, members))
    save(out, members, args.combine[0])
    print(f"{text}\n\n{len(dirs)} members; recipes.ensemble.load({str(out)!r}) loads the ensemble")

"""Model ensembles of independent runs, a sweep's best trials or one run's snapshots."""

from __future__ import annotations

import argparse
import json
import os
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import yaml
from accelerate import PartialState

from recipes import runs
from recipes.config import DataArguments, RecipeConfig, parse_config
from recipes.data import ImageData, build_transforms, load_image_data, make_loader
from recipes.errors import RecipeError
from recipes.metrics import DEFAULT_METRICS, METRICS_HELP, SPLITS, Scorer, write_report
from recipes.models import WEIGHTS_FILE, load_model, read_shapes, weights_file

MANIFEST = "ensemble.json"
COMBINE = {
    "probs": "average of the members' softmax probabilities",
    "logits": "softmax of the members' averaged logits",
    "vote": "majority vote, ties to the higher mean probability",
}
# Members see images in [0, 1]; each one applies its own mean/std inside the ensemble.
UNIT_SCALE = {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)}
DATA_KEYS = ("dataset", "data_dir", "image_column", "label_column")


class Normalized(torch.nn.Module):
    """A member with its own input normalisation, so that all members share one image tensor."""

    def __init__(self, model: torch.nn.Module, mean, std):
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model((images - self.mean) / self.std)

    def wrap(self, model: torch.nn.Module) -> Normalized:
        """Another model (such as a soup) with this member's normalisation."""
        return Normalized(model, self.mean.flatten().tolist(), self.std.flatten().tolist())


def combine_probs(logits: torch.Tensor, how: str = "probs") -> torch.Tensor:
    """Members' logits (members, batch, classes) to the ensemble's class probabilities."""
    probs = logits.float().softmax(-1).mean(0)
    if how == "logits":
        return logits.float().mean(0).softmax(-1)
    if how == "vote":
        votes = torch.nn.functional.one_hot(logits.argmax(-1), logits.shape[-1]).float().mean(0)
        return (votes + 1e-3 * probs) / 1.001
    return probs


class Ensemble(torch.nn.Module):
    """One classifier made of members; input is images in [0, 1], output log-probabilities."""

    def __init__(self, members: list[torch.nn.Module], combine: str = "probs", label_names=()):
        super().__init__()
        self.members = torch.nn.ModuleList(members)
        self.combine = combine
        self.label_names = list(label_names)

    def member_logits(self, images: torch.Tensor) -> torch.Tensor:
        return torch.stack([member(images).float() for member in self.members])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return combine_probs(self.member_logits(images), self.combine).log()


def read_model_config(directory: Path) -> dict:
    """The config.json that `save_model` writes beside the weights."""
    try:
        return json.loads((directory / "config.json").read_text())
    except (OSError, ValueError):
        raise RecipeError(
            f"member {directory} has no readable config.json; give folders saved by recipes "
            "(a run's model/, best_model/, ema_model/ or snapshots/step_N/)"
        ) from None


def check_members(directories: list[Path]) -> list[str]:
    """At least two readable members predicting one label set; returns the label names."""
    if len(directories) < 2:
        raise RecipeError(
            f"an ensemble needs at least 2 members, got {len(directories)}; add members"
        )
    labels, first = None, directories[0]
    for directory in directories:
        read_shapes(weights_file(directory))
        names = read_model_config(directory).get("label_names")
        if labels is None:
            labels = names
        elif names != labels:
            raise RecipeError(
                f"members {first} and {directory} predict different label sets "
                f"({len(labels)} labels {labels[:3]}... vs {len(names or [])} labels "
                f"{(names or [])[:3]}...); combine only models trained on the same classes"
            )
    return labels


def load_member(directory: Path) -> Normalized:
    """A saved model in eval mode, wrapped with the normalisation it was trained with."""
    try:
        model = load_model(directory)
    except RecipeError:
        raise
    except Exception as err:
        raise RecipeError(
            f"member {directory} cannot be loaded ({type(err).__name__}); it is corrupt: "
            "delete it (a trained member is then retrained on the next call) or leave it out"
        ) from None
    cfg = model.pretrained_cfg
    return Normalized(model, cfg["mean"], cfg["std"]).eval()


def input_size(directories: list[Path]) -> int:
    """The image side all members take; members of different sizes cannot share one batch."""
    sizes = {tuple(read_model_config(d)["pretrained_cfg"]["input_size"]) for d in directories}
    if len(sizes) > 1:
        raise RecipeError(f"members take different input sizes {sorted(sizes)}; use one image_size")
    return sizes.pop()[-1]


def build_ensemble(directories: list[Path], combine: str = "probs") -> Ensemble:
    labels = check_members(directories)
    return Ensemble([load_member(d) for d in directories], combine, labels).eval()


def load(directory: str | Path) -> Ensemble:
    """An ensemble folder (written by `recipes ensemble`) back as one torch.nn.Module."""
    directory = Path(directory)
    if not (directory / MANIFEST).is_file():
        raise RecipeError(
            f"no ensemble at {directory}; expected {MANIFEST} made by `recipes ensemble`"
        )
    manifest = json.loads((directory / MANIFEST).read_text())
    return build_ensemble([directory / p for p in manifest["members"]], manifest["combine"])


def save(out: Path, members: dict[str, Path], combine: str) -> Path:
    """Write the ensemble folder; members outside it are copied in, so that it stands alone."""
    paths = []
    for name, directory in members.items():
        if out.resolve() not in directory.resolve().parents:
            copy = out / "members" / name
            shutil.copytree(directory, copy, dirs_exist_ok=True)
            directory = copy
        paths.append(os.path.relpath(directory, out))
    manifest = {
        "members": paths,
        "combine": combine,
        "input_size": input_size(list(members.values())),
    }
    runs.write_json(out / MANIFEST, manifest)
    return out


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


def eval_loader(data: ImageData, split: str, size: int, batch_size: int):
    """Images resized and scaled to [0, 1] once; every member normalises them its own way."""
    transform = build_transforms(DataArguments(image_size=size), UNIT_SCALE)[1]
    return make_loader(data, split, transform, batch_size, shuffle=False)


@torch.no_grad()
def predict(ensemble: Ensemble, loader, device: torch.device) -> tuple[torch.Tensor, np.ndarray]:
    """Every member's logits over a split in one pass: each image decoded and transformed once."""
    ensemble.to(device).eval()
    logits, labels = [], []
    for images, targets in loader:
        logits.append(ensemble.member_logits(images.to(device)).cpu())
        labels.append(targets)
    return torch.cat(logits, 1), torch.cat(labels).numpy()


def score_split(names: list[str], logits, labels, combines: list[str], scorer: Scorer) -> dict:
    """Metrics of each member and of each way of combining them, on one split."""
    rows = {name: scorer(logits[i].softmax(-1).numpy(), labels) for i, name in enumerate(names)}
    for how in combines:
        label = "ensemble" if how == "probs" else f"ensemble ({how})"
        rows[label] = scorer(combine_probs(logits, how).numpy(), labels)
    return rows


def score_saved(
    model_dirs: dict[str, Path], data_args: DataArguments, split: str = "test"
) -> dict[str, dict]:
    """Accuracy, NLL and ECE of saved models on one split, and with several their ensemble."""
    data = load_image_data(data_args)
    models = Ensemble([load_member(d) for d in model_dirs.values()], "probs", data.label_names)
    loader = eval_loader(data, split, data_args.image_size, 256)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    logits, labels = predict(models, loader, device)
    combine = ["probs"] if len(model_dirs) > 1 else []
    return score_split(list(model_dirs), logits, labels, combine, Scorer())


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


def argument_error(message: str) -> None:
    """argparse's errors as one-line `RecipeError`s, like every other bad input."""
    raise RecipeError(message)


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, str | None, list[str]]:
    """Options of `recipes ensemble`; the rest are `--key value` recipe overrides."""
    recipe = argv[0] if argv and not argv[0].startswith("-") else None
    usage = (
        "recipes ensemble [RECIPE.yaml] --members N [--key value ...] | --from-sweep DIR "
        "--top K | --snapshots RUN_DIR | --models DIR DIR... [options]"
    )
    parser = argparse.ArgumentParser(prog="recipes ensemble", usage=usage, allow_abbrev=False)
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
    parser.error = argument_error
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

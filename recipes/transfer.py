"""Transfer learning: each mode's route, linear-probe-then-fine-tune, and the strategy table."""

from __future__ import annotations

import dataclasses
import os
import shutil
import statistics
from collections import Counter
from dataclasses import dataclass, field

import timm
import torch

from recipes import runs
from recipes.config import RecipeConfig, parse_config
from recipes.errors import command_parser
from recipes.features import POOLED, Features, layer_name, load_features
from recipes.models import stage_names
from recipes.probe import probe_features, run_linear_probe, search_l2

LITTLE_PER_CLASS = 100  # fewer training examples per class than this is "little data"
SIMILAR_MARGIN = 0.10  # pretrained features must beat random ones by this to count as "similar"
ADVISE_EPOCHS = 10
PROBE_EPOCHS = 10
TABLE = {
    (True, True): (
        "linear_probe",
        "similar data, little of it: a linear classifier on the top layer",
    ),
    (True, False): ("finetune", "similar data, a lot of it: fine-tune a few layers"),
    (False, True): (
        "stage",
        "different data, little of it: try linear classifiers from different stages",
    ),
    (False, False): (
        "finetune",
        "different data, a lot of it: fine-tune a larger number of layers",
    ),
}


def with_fields(config: RecipeConfig, **values) -> RecipeConfig:
    """A copy of the config with some flat fields changed (the same names as the command line)."""
    parts = {}
    for name in ("data", "model", "training"):
        part = getattr(config, name)
        mine = {k: v for k, v in values.items() if hasattr(part, k)}
        parts[name] = dataclasses.replace(part, **mine)
    return RecipeConfig(**parts)


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def probe_then_finetune(config: RecipeConfig) -> dict:
    """LP-FT: train the head alone on cached features, then fine-tune everything from there."""
    from recipes.engine import train

    run_dir = runs.run_dir(config)
    if config.training.overwrite_output_dir and run_dir.exists() and is_main_process():
        shutil.rmtree(run_dir)
    probe_dir = run_dir / "probe"
    probe = run_linear_probe(
        with_fields(
            config,
            mode="linear_probe",
            num_epochs=config.model.probe_epochs,
            output_dir=str(probe_dir),
            run_name=f"{runs.run_name(config)}-probe",
            freeze_stages=0,
            overwrite_output_dir=False,
        )
    )
    tuned = with_fields(
        config, checkpoint=str(probe_dir / "model"), pretrained=False, overwrite_output_dir=False
    )
    results = train(tuned)
    results["probe"] = {k: probe[k] for k in ("best_val_accuracy", "l2", "solver", "feature_cache")}
    return results


def run_transfer(config: RecipeConfig) -> dict:
    """What `recipes train` runs for pretrained weights or `strategy: auto`."""
    from recipes.engine import train

    advice = None
    if config.model.strategy == "auto":
        advice = advise(config)
        print(advice.report())
        config = with_fields(config, **advice.settings)
    m = config.model
    if m.mode == "linear_probe" and m.cached_features:
        results = run_linear_probe(config)
    elif m.mode == "finetune" and m.probe_epochs:
        results = probe_then_finetune(config)
    else:
        results = train(config)
    if advice is not None and is_main_process():
        runs.write_json(runs.run_dir(config) / "advice.json", dataclasses.asdict(advice))
    return results


@dataclass
class Advice:
    """Where the data sits in the lecture's 2x2 table, the numbers that put it there, what to do."""

    examples_per_class: float
    little_data: bool
    pretrained_accuracy: float | None = None
    random_accuracy: float | None = None
    stage_accuracy: dict[str, float] = field(default_factory=dict)
    similar: bool | None = None
    cell: str = "no pretrained weights: nothing to transfer, train from scratch"
    settings: dict = field(default_factory=lambda: {"mode": "scratch"})

    def report(self) -> str:
        """The measurements, the table with the chosen cell marked, and the recipe lines to use."""
        size = "little" if self.little_data else "a lot of"
        lines = [
            f"data: {self.examples_per_class:g} training examples per class (median): {size} data "
            f"(threshold {LITTLE_PER_CLASS})"
        ]
        if self.pretrained_accuracy is not None:
            gap = self.pretrained_accuracy - self.random_accuracy
            lines.append(
                f"similarity: linear probe val accuracy {self.pretrained_accuracy:.3f} with the "
                f"pretrained backbone, {self.random_accuracy:.3f} with random weights "
                f"(gap {gap:+.3f}): "
                f"{'similar' if self.similar else 'different'} (margin {SIMILAR_MARGIN})"
            )
            stages = ", ".join(f"{k} {v:.3f}" for k, v in self.stage_accuracy.items())
            lines.append(f"linear probe by stage: {stages}")
            lines += table_lines(self.similar, self.little_data)
        lines.append(f"advice: {self.cell}")
        lines += ["recipe:"] + [f"  {k}: {v}" for k, v in self.settings.items()]
        return "\n".join(lines)


def table_lines(similar: bool, little: bool) -> list[str]:
    """The lecture's table, with an arrow at the cell the measurements point to."""
    lines = [f"{'':16}| {'little data':34}| a lot of data"]
    for is_similar in (True, False):
        cells = [
            ("-> " if (is_similar, is_little) == (similar, little) else "   ")
            + TABLE[(is_similar, is_little)][0]
            for is_little in (True, False)
        ]
        name = "similar data" if is_similar else "different data"
        lines.append(f"{name:16}| {cells[0]:34}| {cells[1]}")
    return lines


def probe_accuracy(train: Features, val: Features, layer: str, num_classes: int) -> float:
    """Best validation accuracy of a linear probe on one layer's features."""
    pick = lambda f: Features({POOLED: f.layers[layer]}, f.labels, f.status, f.seconds)  # noqa: E731
    best, _ = search_l2(pick(train), pick(val), num_classes, ADVISE_EPOCHS, "lbfgs")
    return best.records[-1]["val_accuracy"]


def random_features(config: RecipeConfig, setup, device) -> dict[str, Features]:
    """Features of the same architecture with random weights: what no pretraining gives."""
    torch.manual_seed(config.training.seed)
    model = timm.create_model(config.model.model_name, num_classes=setup.data.num_classes)
    return {
        split: load_features(
            model,
            f"{config.model.model_name}@random-init",
            setup.data,
            split,
            setup.data_config,
            config.data,
            None,
            config.model.feature_cache_dir,
            device,
            config.training.mixed_precision,
        )
        for split in ("train", "validation")
    }


def choose_settings(similar: bool, little: bool, stage_accuracy: dict[str, float]) -> dict:
    """The table's cell as recipe settings; the best stage decides how much stays frozen."""
    mode = TABLE[(similar, little)][0]
    best_stage = max(stage_accuracy, key=stage_accuracy.get)
    if mode == "linear_probe" or (mode == "stage" and best_stage == POOLED):
        return {"mode": "linear_probe", "cached_features": True}
    if mode == "stage":
        frozen = int(best_stage.removeprefix("stage_")) + 1
        return {
            "mode": "finetune",
            "freeze_stages": frozen,
            "probe_epochs": PROBE_EPOCHS,
            "backbone_lr_scale": 0.1,
        }
    stages = len(stage_accuracy) - 1
    frozen = stages // 2 if similar else 0
    return {
        "mode": "finetune",
        "freeze_stages": frozen,
        "probe_epochs": PROBE_EPOCHS,
        "backbone_lr_scale": 0.1 if similar else 1.0,
    }


def advise(config: RecipeConfig) -> Advice:
    """Measure the data's size and its similarity to the pretraining, then place it in the table."""
    from recipes.run_setup import build_setup

    has_weights = bool(config.model.pretrained or config.model.checkpoint)
    probe_config = with_fields(config, mode="linear_probe" if has_weights else "scratch")
    setup = build_setup(probe_config)
    counts = Counter(setup.data.splits["train"][setup.data.label_column])
    per_class = statistics.median(counts.get(c, 0) for c in range(setup.data.num_classes))
    little = per_class < LITTLE_PER_CLASS
    if not has_weights:
        return Advice(per_class, little)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    stages = [*range(len(stage_names(setup.model))), None]
    ours = probe_features(probe_config, setup, device, stages)
    k = setup.data.num_classes
    stage_accuracy = {
        layer_name(s): probe_accuracy(ours["train"], ours["validation"], layer_name(s), k)
        for s in stages
    }
    theirs = random_features(config, setup, device)
    random_accuracy = probe_accuracy(theirs["train"], theirs["validation"], POOLED, k)
    similar = stage_accuracy[POOLED] - random_accuracy >= SIMILAR_MARGIN
    settings = choose_settings(similar, little, stage_accuracy)
    return Advice(
        per_class,
        little,
        stage_accuracy[POOLED],
        random_accuracy,
        stage_accuracy,
        similar,
        TABLE[(similar, little)][1],
        settings,
    )


def advise_command(argv: list[str]) -> None:
    """`recipes transfer advise RECIPE.yaml [--key value ...]`."""
    recipe = argv[0] if argv and not argv[0].startswith("--") else None
    advice = advise(parse_config(recipe, argv[1:] if recipe else argv))
    print(advice.report())


def transfer_command(argv: list[str]) -> None:
    """`recipes transfer {advise,study,compare-backbones} ...`."""
    from recipes import transfer_study

    commands = {
        "advise": (
            advise_command,
            "place a recipe's data in the transfer table and say which mode to use",
        ),
        "study": (
            transfer_study.study_command,
            "scratch vs probe vs fine-tune against labels per class",
        ),
        "compare-backbones": (
            transfer_study.compare_command,
            "linear-probe accuracy of several backbones",
        ),
    }
    if not argv or argv[0] not in commands:
        parser = command_parser("recipes transfer")
        parser.add_argument(
            "command",
            choices=sorted(commands),
            help="; ".join(f"{k}: {v[1]}" for k, v in commands.items()),
        )
        parser.parse_args(argv[:1])
    commands[argv[0]][0](argv[1:])

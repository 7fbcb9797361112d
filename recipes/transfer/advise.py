"""The lecture's transfer table: measure data size and similarity, then say which mode to use."""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass, field

import timm
import torch

from recipes.core.config import RecipeConfig
from recipes.core.models import stage_names
from recipes.transfer.features import POOLED, Features, layer_name, load_features
from recipes.transfer.probe import probe_features
from recipes.transfer.probe_fit import search_l2

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
    model = timm.create_model(
        config.model.model_name,
        num_classes=setup.data.num_classes,
        in_chans=setup.data.channels,
    )
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
    from recipes.training.setup import build_setup

    has_weights = bool(config.model.pretrained or config.model.checkpoint)
    probe_config = config.replace(mode="linear_probe" if has_weights else "scratch")
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

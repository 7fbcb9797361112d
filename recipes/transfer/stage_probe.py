"""Linear probes on earlier stages: the lecture's "try linear classifiers from different stages"
for little data unlike the pretraining, scored on the test split."""

from __future__ import annotations

import torch

from recipes.core.config import RecipeConfig
from recipes.core.errors import RecipeError
from recipes.core.models import stage_names
from recipes.ensembles.metrics import Scorer
from recipes.training.setup import build_setup
from recipes.transfer.features import POOLED, Features, layer_name, load_features
from recipes.transfer.probe_fit import choose_solver, search_l2

SPLITS = ("train", "validation", "test")


def one_layer(features: Features, layer: str) -> Features:
    """The features of one layer, under the name the probe fits (POOLED)."""
    return Features({POOLED: features.layers[layer]}, features.labels, features.status, 0.0)


def earlier_stages(model: torch.nn.Module) -> list[int]:
    """Every feature stage but the last (whose pooled output is the ordinary linear probe)."""
    count = len(stage_names(model))
    if count < 2:
        raise RecipeError(f"{type(model).__name__} has {count} feature stages: none earlier")
    return list(range(count - 1))


def stage_probe(config: RecipeConfig, stages: list[int] | None = None) -> dict:
    """A linear probe on each stage's pooled features (L2 chosen on validation), the stage best on
    validation, and that probe's test accuracy, NLL and ECE; `stages` default to the earlier ones.

    The recipe's checkpoint (or hub weights) is the frozen backbone; `num_epochs` L-BFGS epochs.
    """
    setup = build_setup(config.replace(mode="linear_probe"))
    stages = earlier_stages(setup.model) if stages is None else stages
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    t = config.training
    features = {
        split: load_features(
            setup.model, config.model.model_name, setup.data, split, setup.data_config,
            config.data, stages, config.model.feature_cache_dir, device, t.mixed_precision,
            t.per_device_eval_batch_size,
        )
        for split in SPLITS
    }  # fmt: skip
    k, fits = setup.data.num_classes, {}
    for layer in map(layer_name, stages):
        train, val = (one_layer(features[s], layer) for s in SPLITS[:2])
        solver = choose_solver(config.model.probe_solver, train)
        fits[layer], _ = search_l2(train, val, k, t.num_epochs, solver)
    best = max(fits, key=lambda layer: fits[layer].score)
    weight, bias = fits[best].heads[-1]
    test = features["test"]
    probs = (test.layers[best] @ weight.T + bias).softmax(-1)
    return {
        "stage": best,
        "stage_val_accuracy": {
            layer: fit.records[-1]["val_accuracy"] for layer, fit in fits.items()
        },
        "best_val_accuracy": fits[best].records[-1]["val_accuracy"],
        "l2": fits[best].l2,
        "train_examples": len(features["train"].labels),
        "feature_cache": {split: f.status for split, f in features.items()},
        "test": Scorer()(probs.numpy(), test.labels.numpy()),
    }

"""Linear probes on earlier stages, and a grayscale backbone on RGB data: real timm models on
digits, through the same data, features and probe code as `recipes train`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import timm
import torch

from recipes.core.config import parse_config
from recipes.core.errors import RecipeError
from recipes.core.models import load_local, load_model, save_model
from recipes.training.route import run_recipe
from recipes.training.setup import build_setup
from recipes.transfer.advise import probe_accuracy
from recipes.transfer.channels import match_channels
from recipes.transfer.features import layer_name, load_features
from recipes.transfer.stage_probe import stage_probe

FAST = ["--report_to", "none", "--model_name", "test_resnet"]
SOURCE = ["--classes", "0", "1", "2", "3", "4"]
TARGET = ["--classes", "5", "6", "7", "8", "9"]


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("earlier-stage")


@pytest.fixture(scope="module")
def source(work: Path) -> Path:
    """A test_resnet pretrained by the engine on digits 0-4."""
    out = work / "src"
    run_recipe(parse_config(None, [*FAST, *SOURCE, "--num_epochs", "1", "--output_dir", str(out)]))
    return out / "best_model"


def target_config(work: Path, checkpoint: Path):
    cache = ["--feature_cache_dir", str(work / "cache")]
    overrides = [*FAST, *TARGET, *cache, "--checkpoint", str(checkpoint),
                 "--train_per_class", "10", "--num_epochs", "10"]  # fmt: skip
    return parse_config(None, overrides)


def test_stage_probe_picks_the_earlier_stage_best_on_validation(work: Path, source: Path):
    config = target_config(work, source)
    result = stage_probe(config)
    earlier = {layer_name(s) for s in range(4)}  # test_resnet: 5 stages, the last is pooled
    assert set(result["stage_val_accuracy"]) == earlier
    scores = result["stage_val_accuracy"]
    assert result["stage"] == max(scores, key=scores.get)
    assert result["best_val_accuracy"] == scores[result["stage"]]
    assert result["train_examples"] == 50
    assert result["test"]["accuracy"] > 0.5 and result["test"]["nll"] > 0
    assert set(result["feature_cache"]) == {"train", "validation", "test"}
    json.dumps(result)  # a study stores it as it is
    setup = build_setup(config.replace(mode="linear_probe"))
    args = (setup.model, "test_resnet", setup.data)
    split = {
        s: load_features(*args, s, setup.data_config, config.data, [0, 1, 2, 3], work / "cache")
        for s in ("train", "validation")
    }
    assert all(f.status == "reused" for f in split.values())
    for layer, accuracy in scores.items():  # the advisor's per-stage probe agrees
        assert probe_accuracy(split["train"], split["validation"], layer, 5) == accuracy
    again = stage_probe(config, stages=[1])
    assert again["stage"] == "stage_1" and set(again["feature_cache"].values()) == {"built"}


def test_a_stage_that_does_not_exist_is_refused(work: Path, source: Path):
    with pytest.raises(RecipeError, match="stage 9 does not exist"):
        stage_probe(target_config(work, source), stages=[9])


def test_a_grayscale_backbone_takes_rgb_digits(work: Path):
    gray = timm.create_model("test_resnet", num_classes=5, in_chans=1).eval()
    folder = save_model(
        gray,
        work / "gray",
        list("abcde"),
        {"input_size": (1, 32, 32), "mean": (0.45,), "std": (0.23,)},
    )
    assert match_channels(folder, 1, work / "unused") == folder
    rgb = match_channels(folder, 3, work / "rgb")
    model = load_local("test_resnet", str(rgb), 10, in_chans=3).eval()
    image = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        ours = model.forward_features(image.repeat(1, 3, 1, 1))
        theirs = gray.forward_features(image)
    assert torch.allclose(ours, theirs, atol=1e-5)
    assert load_model(rgb).pretrained_cfg["mean"] == [0.45, 0.45, 0.45]
    probe = ["--mode", "linear_probe", "--num_epochs", "3", "--output_dir", str(work / "probe")]
    overrides = [
        *FAST,
        "--checkpoint",
        str(rgb),
        "--feature_cache_dir",
        str(work / "cache"),
        *probe,
    ]
    results = run_recipe(parse_config(None, overrides))  # digits are RGB: 10 classes, 3 channels
    assert results["best_val_accuracy"] > 0.5

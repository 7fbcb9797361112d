"""timm backbones: local weights with a new head, freezing, and a save that three loaders read."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from safetensors.torch import save_file

from recipes.core.arguments import ModelArguments
from recipes.core.errors import RecipeError
from recipes.core.models import create_model, load_model, save_model, train_mode

DATA_CONFIG = dict(
    input_size=(3, 32, 32),
    crop_pct=1.0,
    interpolation="bilinear",
    mean=(0.485, 0.456, 0.406),
    std=(0.229, 0.224, 0.225),
)
LABELS = [f"class_{i}" for i in range(4)]


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> tuple[torch.nn.Module, Path]:
    model = timm.create_model("test_convnext", num_classes=4).eval()
    directory = save_model(model, tmp_path_factory.mktemp("m") / "model", LABELS, DATA_CONFIG)
    return model, directory


def test_saved_folder_loads_in_timm_transformers_and_pipeline(saved) -> None:
    from transformers import AutoModelForImageClassification, pipeline

    model, directory = saved
    assert {"config.json", "model.safetensors"} <= {p.name for p in directory.iterdir()}
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
        torch.testing.assert_close(load_model(directory)(x), expected)
        hf = AutoModelForImageClassification.from_pretrained(directory).eval()
        torch.testing.assert_close(hf(pixel_values=x).logits, expected)
    assert [hf.config.id2label[i] for i in range(4)] == LABELS
    image = Image.fromarray((np.random.default_rng(0).random((32, 32, 3)) * 255).astype("uint8"))
    predictions = pipeline("image-classification", model=str(directory))(image, top_k=4)
    assert sorted(p["label"] for p in predictions) == LABELS
    assert sum(p["score"] for p in predictions) == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_local_weights_with_a_new_head(saved, tmp_path: Path, suffix: str) -> None:
    model, _ = saved
    path = tmp_path / f"weights{suffix}"
    state = model.state_dict()
    save_file(state, path) if suffix == ".safetensors" else torch.save(state, path)
    args = ModelArguments(model_name="test_convnext", checkpoint=str(path), mode="finetune")
    same = create_model(args, num_classes=4).eval()
    torch.testing.assert_close(same.state_dict()["head.fc.weight"], state["head.fc.weight"])
    new_head = create_model(args, num_classes=7)
    assert new_head.get_classifier().out_features == 7
    torch.testing.assert_close(new_head.state_dict()["stem.0.weight"], state["stem.0.weight"])


def test_checkpoint_of_other_shapes_is_refused(saved, tmp_path: Path) -> None:
    state = dict(saved[0].state_dict())
    state["stem.0.weight"] = torch.zeros(5, 3, 2, 2)
    path = tmp_path / "other.safetensors"
    save_file(state, path)
    args = ModelArguments(model_name="test_convnext", checkpoint=str(path), mode="finetune")
    with pytest.raises(RecipeError, match=r"does not match.*1 of other shape.*stem.0.weight"):
        create_model(args, num_classes=4)


def test_checkpoint_of_another_model_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "resnet.safetensors"
    save_file(timm.create_model("test_resnet", num_classes=4).state_dict(), path)
    args = ModelArguments(model_name="test_convnext", checkpoint=str(path), mode="finetune")
    with pytest.raises(
        RecipeError, match="weights missing.*use a checkpoint of the same model_name"
    ):
        create_model(args, num_classes=4)


def test_saved_folder_of_another_architecture_is_refused(saved) -> None:
    _, directory = saved
    args = ModelArguments(model_name="test_resnet", checkpoint=str(directory), mode="finetune")
    with pytest.raises(RecipeError, match="is a test_convnext, not a test_resnet"):
        create_model(args, num_classes=4)


def test_unknown_model_suggests_close_names() -> None:
    with pytest.raises(RecipeError, match="unknown timm model 'resnet1'; did you mean .*resnet18"):
        create_model(ModelArguments(model_name="resnet1"), num_classes=3)


@pytest.mark.parametrize("offline", ["1", "0"])
def test_hub_weights_without_network_fail_within_seconds(monkeypatch, offline: str) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", offline)
    start = time.perf_counter()
    with pytest.raises(RecipeError, match="weights of resnet10t.*set checkpoint: PATH"):
        create_model(ModelArguments(model_name="resnet10t", pretrained=True), num_classes=3)
    assert time.perf_counter() - start < 10


def test_linear_probe_trains_only_the_head_and_keeps_batchnorm_fixed() -> None:
    model = create_model(ModelArguments(model_name="test_resnet"), num_classes=3)
    from recipes.core.models import freeze_backbone

    freeze_backbone(model)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"fc.weight", "fc.bias"}
    train_mode(model)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and not any(m.training for m in norms)
    assert model.get_classifier().training
    before = norms[0].running_mean.clone()
    model(torch.randn(4, 3, 32, 32) * 5 + 3)
    torch.testing.assert_close(norms[0].running_mean, before)


def test_saved_head_is_kept_only_for_the_same_classes(saved) -> None:
    model, directory = saved
    args = ModelArguments(model_name="test_convnext", checkpoint=str(directory), mode="finetune")
    same = create_model(args, 4, LABELS).state_dict()["head.fc.weight"]
    other = create_model(args, 4, ["a", "b", "c", "d"]).state_dict()["head.fc.weight"]
    torch.testing.assert_close(same, model.state_dict()["head.fc.weight"])
    assert not torch.allclose(other, model.state_dict()["head.fc.weight"])

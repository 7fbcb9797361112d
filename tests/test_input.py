"""Fashion-MNIST from Debian's IDX files, and the decoded-once, batch-augmented input pipeline."""

from __future__ import annotations

import json
import math
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import RandomResizedCrop, v2

from recipes.core import fashion
from recipes.core.arguments import DataArguments, ModelArguments
from recipes.core.augment import BatchTransform, crop_boxes
from recipes.core.data import load_image_data
from recipes.core.errors import RecipeError
from recipes.core.models import create_model
from tests.conftest import run_cli

needs_fashion = pytest.mark.skipif(
    fashion.idx_folder(None) is None, reason="apt-get install dataset-fashion-mnist"
)


@pytest.fixture(scope="module")
def fmnist():
    return load_image_data(DataArguments(dataset="fashion_mnist"))


@needs_fashion
def test_fashion_mnist_has_the_official_test_split_and_a_stratified_validation(fmnist):
    sizes = {name: len(split) for name, split in fmnist.splits.items()}
    assert sizes == {"train": 55000, "validation": 5000, "test": 10000}
    assert fmnist.label_names[:2] == ["T-shirt/top", "Trouser"] and fmnist.num_classes == 10
    assert set(Counter(fmnist.splits["validation"]["label"]).values()) == {500}
    images, labels = fmnist.decoded("test", 32)
    assert images.shape == (10000, 1, 28, 28) and images.dtype == torch.uint8
    assert fmnist.channels == 1 and labels.dtype == torch.long and labels.max() == 9


@needs_fashion
def test_fashion_mnist_reads_the_files_from_data_dir(tmp_path):
    for pair in fashion.FILES.values():
        for name in pair:
            (tmp_path / f"{name}.gz").symlink_to(fashion.find_file(fashion.DEBIAN_DIR, name))
    data = load_image_data(DataArguments(dataset="fashion_mnist", data_dir=str(tmp_path)))
    assert len(data.splits["test"]) == 10000


def test_missing_fashion_mnist_names_the_three_ways_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setattr(fashion, "DEBIAN_DIR", tmp_path / "nowhere")
    with pytest.raises(RecipeError, match="dataset-fashion-mnist.*zalando-datasets/fashion_mnist"):
        load_image_data(DataArguments(dataset="fashion_mnist", data_dir=str(tmp_path)))


def test_crop_boxes_follow_torchvisions_random_resized_crop():
    """Area and aspect ratio of our vectorised boxes against torchvision's own sampler."""
    torch.manual_seed(0)
    ours = crop_boxes(4000, 28, 28, (0.3, 1.0), (3 / 4, 4 / 3))
    image = torch.zeros(1, 28, 28)
    theirs = torch.tensor(
        [RandomResizedCrop.get_params(image, [0.3, 1.0], [3 / 4, 4 / 3]) for _ in range(4000)],
        dtype=torch.float,
    )
    for boxes in (ours, theirs):
        top, left, h, w = boxes.unbind(1)
        assert (top >= 0).all() and (left >= 0).all()
        assert (top + h <= 28).all() and (left + w <= 28).all()
    area = lambda b: (b[:, 2] * b[:, 3] / 784).quantile(torch.tensor([0.1, 0.5, 0.9]))  # noqa: E731
    assert torch.allclose(area(ours), area(theirs), atol=0.03)


def test_flip_mirrors_and_a_whole_image_crop_is_the_image():
    image = torch.arange(64, dtype=torch.uint8).view(1, 1, 8, 8).repeat(2, 1, 1, 1)
    keep = BatchTransform(8, (0.0,), (1 / 255,), train=True, scale=(1.0, 1.0), ratio=(1, 1))
    flip = BatchTransform(8, (0.0,), (1 / 255,), train=True, scale=(1.0, 1.0), ratio=(1, 1),
                          hflip=1.0)  # fmt: skip
    assert torch.allclose(keep(image), image.float(), atol=1e-3)
    assert torch.allclose(flip(image), image.float().flip(-1), atol=1e-3)


def test_evaluation_resize_and_normalise_match_torchvision():
    images = torch.randint(0, 256, (4, 3, 28, 28), dtype=torch.uint8)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    resized = v2.Resize(32, antialias=True)(images.float())
    theirs = v2.Normalize(mean, std)(resized / 255)
    assert torch.allclose(BatchTransform(32, mean, std)(images), theirs, atol=1e-4)


def test_image_files_are_decoded_once_and_again_when_they_change(tmp_path, monkeypatch):
    monkeypatch.setenv("RECIPES_CACHE", str(tmp_path / "cache"))
    for label in ("a", "b"):
        (tmp_path / "data" / label).mkdir(parents=True)
        for i in range(12):
            Image.fromarray(np.full((20, 20), i * 10, np.uint8)).save(
                tmp_path / "data" / label / f"{i}.png"
            )
    args = DataArguments(dataset="imagefolder", data_dir=str(tmp_path / "data"))
    first = load_image_data(args).decoded("train", 16)[0]
    cached = sorted((tmp_path / "cache" / "decoded").glob("*.npy"))
    assert first.shape[1:] == (1, 16, 16) and len(cached) == 1
    load_image_data(args).decoded("train", 16)
    assert sorted((tmp_path / "cache" / "decoded").glob("*.npy")) == cached
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(tmp_path / "data" / "a" / "new.png")
    load_image_data(args).decoded("train", 16)
    assert len(list((tmp_path / "cache" / "decoded").glob("*.npy"))) == 2


def test_grayscale_data_gets_a_one_channel_model():
    model = create_model(ModelArguments(model_name="test_convnext"), 10, in_chans=1)
    assert model(torch.zeros(2, 1, 32, 32)).shape == (2, 10)


@needs_fashion
def test_fashion_recipe_trains_a_small_subset(tmp_path):
    result = run_cli(
        "train", "recipes/configs/fashion/scratch.yaml", "--model_name", "test_convnext",
        "--max_train_samples", "512", "--num_epochs", "1", "--warmup_epochs", "0",
        "--mixed_precision", "no", "--channels_last", "false",
        "--output_dir", str(tmp_path / "run"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert math.isfinite(results["val_loss"]) and results["train_examples"] == 512

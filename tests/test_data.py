"""Embedded digits, image folders, hub ids offline, and timm transforms applied lazily."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import ClassLabel
from datasets import Image as ImageFeature
from PIL import Image

from recipes.core.arguments import DataArguments
from recipes.core.data import build_transforms, load_image_data, make_loader
from recipes.core.errors import RecipeError
from recipes.core.folders import load_image_folder

DATA_CONFIG = {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}


@pytest.fixture(scope="module")
def digits():
    return load_image_data(DataArguments())


def test_digits_is_a_stratified_hf_dataset(digits) -> None:
    splits = digits.splits
    assert {k: len(v) for k, v in splits.items()} == {"train": 1257, "validation": 270, "test": 270}
    assert isinstance(splits["train"].features["image"], ImageFeature)
    assert isinstance(splits["train"].features["label"], ClassLabel)
    assert digits.label_names == [str(d) for d in range(10)]
    image = splits["train"][0]["image"]
    assert image.size == (32, 32) and image.mode == "RGB"
    counts = Counter(splits["validation"]["label"])
    assert max(counts.values()) - min(counts.values()) <= 2


def test_digits_split_is_fixed(digits) -> None:
    again = load_image_data(DataArguments())
    assert again.splits["test"]["label"] == digits.splits["test"]["label"]


def test_augmentation_only_for_training(digits) -> None:
    train_tf, eval_tf = build_transforms(DataArguments(crop_scale=0.3), DATA_CONFIG)
    images = digits.decoded("train", 32)[0][:8]
    assert images.dtype == torch.uint8 and images.shape == (8, 3, 32, 32)
    torch.manual_seed(0)
    assert not torch.equal(train_tf(images), train_tf(images))
    assert torch.equal(eval_tf(images), eval_tf(images))
    assert eval_tf(images).shape == (8, 3, 32, 32)


def test_loader_gives_image_label_batches(digits) -> None:
    _, eval_tf = build_transforms(DataArguments(image_size=48), DATA_CONFIG)
    images, labels = next(iter(make_loader(digits, "test", eval_tf, 16, shuffle=False)))
    assert images.shape == (16, 3, 48, 48) and images.dtype == torch.float32
    assert labels.tolist() == digits.splits["test"]["label"][:16]


def write_folder(root: Path, classes=("cat", "dog"), per_class: int = 8) -> Path:
    rng = np.random.default_rng(0)
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = (rng.random((20, 24, 3)) * 255).astype("uint8")
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


def test_image_folder_with_carved_splits(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "pets", per_class=20)
    data = load_image_data(DataArguments(dataset="imagefolder", data_dir=str(folder)))
    assert data.label_names == ["cat", "dog"]
    assert sum(len(s) for s in data.splits.values()) == 40
    assert set(data.splits) == {"train", "validation", "test"}


def test_corrupt_image_is_named(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "pets", per_class=20)
    (folder / "dog" / "3.png").write_bytes(b"\x89PNG\r\n\x1a\n not really an image")
    with pytest.raises(RecipeError, match=r"corrupt image file .*dog/3.png"):
        load_image_data(DataArguments(dataset="imagefolder", data_dir=str(folder)))


@pytest.mark.parametrize("make", ["missing", "empty"])
def test_missing_or_empty_folder(tmp_path: Path, make: str) -> None:
    folder = tmp_path / "data"
    if make == "empty":
        folder.mkdir()
    with pytest.raises(RecipeError, match="image folder not found|no image files"):
        load_image_data(DataArguments(dataset="imagefolder", data_dir=str(folder)))


def test_wrong_column_name(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "pets", per_class=20)
    args = DataArguments(dataset="imagefolder", data_dir=str(folder), label_column="labels")
    with pytest.raises(RecipeError, match="label_column 'labels' is not a column; columns are"):
        load_image_data(args)


@pytest.mark.parametrize(
    ("offline", "message"),
    [
        ("1", "dataset 'beans' is not available offline; load it once with the network"),
        ("0", "cannot reach huggingface.co to fetch dataset 'beans'; set HF_HUB_OFFLINE=1"),
    ],
)
def test_hub_dataset_without_network_fails_within_seconds(monkeypatch, offline, message) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", offline)
    start = time.perf_counter()
    with pytest.raises(RecipeError, match="imagefolder with data_dir") as error:
        load_image_data(DataArguments(dataset="beans"))
    assert str(error.value).startswith(message)
    assert time.perf_counter() - start < 10


def test_class_folders_match_datasets_imagefolder(tmp_path: Path) -> None:
    """The fast listing gives the dataset datasets' own builder gives: same files, same labels."""
    from datasets import load_dataset

    folder = write_folder(tmp_path / "pets", per_class=6)
    ours = load_image_folder(str(folder))["train"]
    theirs = load_dataset("imagefolder", data_dir=str(folder))["train"]
    assert ours.features == theirs.features

    def rows(split):
        raw = split.cast_column("image", ImageFeature(decode=False))
        return sorted((Path(r["image"]["path"]).resolve(), r["label"]) for r in raw)

    assert rows(ours) == rows(theirs)


def test_changed_file_changes_the_fingerprint(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "pets", per_class=6)
    before = load_image_folder(str(folder))["train"]._fingerprint
    assert load_image_folder(str(folder))["train"]._fingerprint == before
    image = next((folder / "dog").iterdir())
    image.write_bytes(image.read_bytes() + b"\0")
    assert load_image_folder(str(folder))["train"]._fingerprint != before

"""Fashion-MNIST (Zalando Research: 70,000 grayscale 28x28 images of 10 kinds of clothing),
read offline from its four IDX files, or from the hub when online."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
from datasets import Array2D, ClassLabel, Dataset, DatasetDict, Features
from torchvision.datasets import FashionMNIST
from torchvision.datasets.mnist import read_image_file, read_label_file

from recipes.core.cache import cache_root
from recipes.core.errors import RecipeError
from recipes.core.hub import hub_offline, hub_reachable

FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")  # Debian's dataset-fashion-mnist
HUB_ID = "zalando-datasets/fashion_mnist"
VALIDATION = 5000  # a fixed stratified share of the 60,000 training images
SPLIT_SEED = 0
HOW_TO_GET = (
    "put the four *-ubyte(.gz) files in data_dir, install Debian's package "
    "(apt-get install dataset-fashion-mnist), or go online for the hub dataset " + HUB_ID
)


def find_file(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def idx_folder(data_dir: str | None) -> Path | None:
    """The first of data_dir and Debian's folder that holds all four files."""
    folders = [Path(data_dir), DEBIAN_DIR] if data_dir else [DEBIAN_DIR]
    for folder in folders:
        if all(find_file(folder, name) for pair in FILES.values() for name in pair):
            return folder
    return None


def unzipped(path: Path) -> Path:
    """torchvision's readers take raw IDX files: a .gz is unpacked once into the cache."""
    if path.suffix != ".gz":
        return path
    stat = path.stat()
    out = cache_root() / "fashion-mnist" / f"{path.stem}-{stat.st_size}-{int(stat.st_mtime)}"
    if not out.is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.with_suffix(".part")
        with gzip.open(path, "rb") as src, partial.open("wb") as dst:
            shutil.copyfileobj(src, dst)
        partial.replace(out)
    return out


def features() -> Features:
    names = list(FashionMNIST.classes)
    return Features({"image": Array2D((28, 28), "uint8"), "label": ClassLabel(names=names)})


def read_split(folder: Path, split: str) -> Dataset:
    images, labels = (unzipped(find_file(folder, name)) for name in FILES[split])
    try:
        pixels, targets = read_image_file(str(images)), read_label_file(str(labels))
    except (RuntimeError, ValueError, AssertionError) as err:
        raise RecipeError(f"Fashion-MNIST file {images} or {labels} is corrupt ({err})") from None
    values = {"image": pixels.numpy().astype(np.uint8), "label": targets.numpy()}
    return Dataset.from_dict(values, features=features())


def with_validation(train: Dataset, test: Dataset) -> DatasetDict:
    """The official test split, and a fixed stratified 5,000 of the training images."""
    held = train.train_test_split(VALIDATION, seed=SPLIT_SEED, stratify_by_column="label")
    return DatasetDict(train=held["train"], validation=held["test"], test=test)


def files_stamp(data_dir: str | None) -> tuple:
    """Path, size and modification time of the IDX files read: changed files read again."""
    folder = idx_folder(data_dir)
    found = [find_file(folder, n) for pair in FILES.values() for n in pair] if folder else []
    return tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in found)


def load_fashion_mnist(data_dir: str | None = None) -> DatasetDict:
    """From data_dir's IDX files, else Debian's, else the hub; otherwise one line saying how."""
    folder = idx_folder(data_dir)
    if folder is not None:
        return with_validation(read_split(folder, "train"), read_split(folder, "test"))
    if hub_offline() or not hub_reachable():
        where = f"{data_dir} or {DEBIAN_DIR}" if data_dir else str(DEBIAN_DIR)
        raise RecipeError(f"Fashion-MNIST is not in {where} and the hub is offline; {HOW_TO_GET}")
    from datasets import load_dataset

    hub = load_dataset(HUB_ID)
    return with_validation(hub["train"], hub["test"])

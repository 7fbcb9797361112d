"""Image data: digits (embedded), Fashion-MNIST, image folders and hub datasets, as batches."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field

import numpy as np
import torch
from datasets import ClassLabel, Dataset, DatasetDict, Features, load_dataset
from datasets import Image as ImageFeature
from PIL import Image

from recipes.core.arguments import DataArguments
from recipes.core.augment import BatchTransform
from recipes.core.decode import decode, image_channels
from recipes.core.errors import RecipeError
from recipes.core.fashion import files_stamp, load_fashion_mnist
from recipes.core.folders import check_images, load_image_folder
from recipes.core.hub import hub_offline, offline_error, require_hub

DIGITS_SIZE = 32
SPLIT_SEED = 0
HOLDOUT = 0.15


@dataclass
class ImageData:
    """Train, validation and test splits with the class names they share, decoded once."""

    splits: DatasetDict
    label_names: list[str]
    image_column: str = "image"
    label_column: str = "label"
    _decoded: dict = field(default_factory=dict, repr=False)

    @property
    def num_classes(self) -> int:
        return len(self.label_names)

    @property
    def channels(self) -> int:
        """1 for grayscale sources (kept so; models get in_chans=1), else 3."""
        return image_channels(self.splits["train"], self.image_column)

    def decoded(self, split: str, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 images [N, C, H, W] and int64 labels of a split, decoded once per size."""
        key = (split, size)
        if key not in self._decoded:
            part = self.splits[split]
            images = decode(part, self.image_column, size, self.channels)
            labels = torch.as_tensor(np.asarray(part[self.label_column]), dtype=torch.long)
            self._decoded[key] = (images, labels)
        return self._decoded[key]


def load_digits() -> DatasetDict:
    """scikit-learn's 8x8 digits as a HF dataset of 32x32 RGB images, split 70/15/15."""
    from sklearn.datasets import load_digits as sk_digits

    digits = sk_digits()
    pixels = (digits.images * (255.0 / 16.0)).astype(np.uint8)
    images = [
        Image.fromarray(p).resize((DIGITS_SIZE, DIGITS_SIZE), Image.BILINEAR).convert("RGB")
        for p in pixels
    ]
    features = Features(
        {"image": ImageFeature(), "label": ClassLabel(names=[str(d) for d in range(10)])}
    )
    full = Dataset.from_dict({"image": images, "label": digits.target.tolist()}, features=features)
    return three_way_split(full, "label")


def three_way_split(full: Dataset, label_column: str) -> DatasetDict:
    """A fixed stratified train / validation / test split."""
    first = full.train_test_split(2 * HOLDOUT, seed=SPLIT_SEED, stratify_by_column=label_column)
    second = first["test"].train_test_split(0.5, seed=SPLIT_SEED, stratify_by_column=label_column)
    return DatasetDict(train=first["train"], validation=second["train"], test=second["test"])


def add_missing_splits(splits: DatasetDict, label_column: str) -> DatasetDict:
    """Carve validation (and test) from train when a source ships only some splits."""
    if "validation" in splits and "test" in splits:
        return splits
    if "validation" not in splits and "test" not in splits:
        return three_way_split(splits["train"], label_column)
    held = splits["train"].train_test_split(
        HOLDOUT, seed=SPLIT_SEED, stratify_by_column=label_column
    )
    present = "validation" if "validation" in splits else "test"
    missing = "test" if present == "validation" else "validation"
    return DatasetDict({"train": held["train"], present: splits[present], missing: held["test"]})


def load_hub_dataset(name: str) -> DatasetDict:
    """A hub dataset id; offline it must already be in the local cache."""
    other = "or use dataset: imagefolder with data_dir"
    require_hub(f"dataset {name!r}", f"set HF_HUB_OFFLINE=1 to use the local cache, {other}")
    try:
        return load_dataset(name)
    except Exception as err:
        if hub_offline() and isinstance(err, ConnectionError):  # not in the cache
            fix = f"load it once with the network (HF_HUB_OFFLINE=0) to cache it, {other}"
            raise offline_error(f"dataset {name!r}", fix) from None
        raise RecipeError(
            f"could not load dataset {name!r} ({type(err).__name__}); check its id, {other}"
        ) from None


def builtin_splits(args: DataArguments) -> DatasetDict:
    """digits or Fashion-MNIST with the recipe's classes; a copy, as callers replace splits."""
    classes = tuple(str(c) for c in args.classes or ())
    stamp = files_stamp(args.data_dir) if args.dataset == "fashion_mnist" else ()
    return DatasetDict(_builtin_splits(args.dataset, args.data_dir, classes, stamp))


@functools.lru_cache(maxsize=4)
def _builtin_splits(dataset: str, data_dir: str | None, classes: tuple, stamp: tuple):
    """Read and class-filtered once per process: sweeps and studies load the same data for
    every run (reading Fashion-MNIST takes 8 s on 2 cores, keeping 5 of its classes 7 more)."""
    splits = load_digits() if dataset == "digits" else load_fashion_mnist(data_dir)
    return keep_classes(splits, "label", list(classes)) if classes else splits


def load_image_data(args: DataArguments) -> ImageData:
    """Load the configured source as train / validation / test splits with class names."""
    if args.dataset in ("digits", "fashion_mnist"):
        splits = builtin_splits(args)
        image_column, label_column = "image", "label"
    else:
        source = load_image_folder(args.data_dir) if args.dataset == "imagefolder" else None
        splits = source if source is not None else load_hub_dataset(args.dataset)
        image_column, label_column = args.image_column, args.label_column
        _check_columns(splits["train"], image_column, label_column)
        check_classes(splits, label_column, args.data_dir or args.dataset)
        try:
            splits = add_missing_splits(splits, label_column)
        except ValueError as err:  # a stratified split of too few images per class
            raise RecipeError(
                f"{args.data_dir or args.dataset}: too few images per class to hold out "
                f"validation and test ({str(err).splitlines()[0]}); add images or give "
                "validation/ and test/ folders"
            ) from None
        if args.dataset == "imagefolder":
            for split in splits.values():
                check_images(split, image_column)
        if args.classes:
            splits = keep_classes(splits, label_column, [str(c) for c in args.classes])
    if args.train_per_class:
        splits["train"] = take_per_class(splits["train"], label_column, args.train_per_class)
    if args.max_train_samples:
        train = splits["train"].shuffle(seed=SPLIT_SEED)
        splits["train"] = train.select(range(min(args.max_train_samples, len(train))))
    label_names = splits["train"].features[label_column].names
    return ImageData(splits, label_names, image_column, label_column)


def check_classes(splits: DatasetDict, label_column: str, where: str) -> None:
    """A classifier needs two classes."""
    names = splits["train"].features[label_column].names
    if len(names) < 2:
        raise RecipeError(
            f"{where} has {len(names)} class ({', '.join(names) or 'none'}); a classifier needs "
            "at least 2 (one folder per class: data_dir/CLASS_NAME/IMAGE.png)"
        )


def keep_classes(splits: DatasetDict, label_column: str, classes: list[str]) -> DatasetDict:
    """Only the named classes, relabelled 0..k-1 in the order given (source/target tasks)."""
    names = splits["train"].features[label_column].names
    unknown = [c for c in classes if c not in names]
    if unknown:
        known = ", ".join(names)
        raise RecipeError(f"classes {', '.join(unknown)} not in the data; its classes: {known}")
    keep = {names.index(c) for c in classes}
    mapping = {c: i for i, c in enumerate(classes)}
    return DatasetDict(
        {
            name: split.filter(
                lambda ys: [y in keep for y in ys], batched=True, input_columns=label_column
            ).align_labels_with_mapping(mapping, label_column)
            for name, split in splits.items()
        }
    )


def take_per_class(train: Dataset, label_column: str, count: int) -> Dataset:
    """The first `count` examples of each class after a fixed shuffle: a few-shot train split."""
    labels = np.array(train[label_column])
    order = np.random.default_rng(SPLIT_SEED).permutation(len(labels))
    picked = [i for c in np.unique(labels) for i in order[labels[order] == c][:count]]
    return train.select(sorted(picked))


def _check_columns(split: Dataset, image_column: str, label_column: str) -> None:
    for key, column in (("image_column", image_column), ("label_column", label_column)):
        if column not in split.column_names:
            raise RecipeError(
                f"{key} {column!r} is not a column; columns are {', '.join(split.column_names)}"
            )
    if not isinstance(split.features[label_column], ClassLabel):
        raise RecipeError(f"label_column {label_column!r} must be a ClassLabel feature")


def build_transforms(args: DataArguments, data_config: dict, augment: bool | None = None):
    """The training (augmented) and evaluation batch transforms for the model's data config."""
    common = dict(size=args.image_size, mean=data_config["mean"], std=data_config["std"])
    augment = args.augment if augment is None else augment
    train = BatchTransform(**common, train=augment, scale=(args.crop_scale, 1.0), hflip=args.hflip)
    return train, BatchTransform(**common)


class DecodedImages(torch.utils.data.Dataset):
    """A decoded split as (image, label) pairs; a batch of indices is transformed in one call."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform: BatchTransform):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        images, labels = self.__getitems__([index])
        return images[0], labels[0]

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.as_tensor(indices)
        return self.transform(self.images[index]), self.labels[index]


def keep_batch(batch):
    """The dataset already returns whole batches: nothing to collate."""
    return batch


def choose_workers(requested: int | None) -> int:
    """Loader processes: none on CPU, where they only take cores from training; some for a GPU."""
    if requested is not None:
        return requested
    return min(8, (os.cpu_count() or 2) // 2) if torch.cuda.is_available() else 0


def make_loader(
    data: ImageData,
    split: str,
    transform: BatchTransform,
    batch_size: int,
    shuffle: bool,
    num_workers: int | None = 0,
    subset: int = 0,
) -> torch.utils.data.DataLoader:
    """Batches of one split (or `subset` images spread evenly over it, so every class is in);
    its own generator leaves the augmentation RNG to resume."""
    images, labels = data.decoded(split, transform.size)
    if 0 < subset < len(labels):
        index = torch.linspace(0, len(labels) - 1, subset).long()
        images, labels = images[index], labels[index]
    workers = choose_workers(num_workers)
    return torch.utils.data.DataLoader(
        DecodedImages(images, labels, transform),
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=workers,
        persistent_workers=workers > 0,
        pin_memory=torch.cuda.is_available(),
        collate_fn=keep_batch,
        drop_last=False,
        generator=torch.Generator().manual_seed(0),
    )

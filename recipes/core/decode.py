"""Decode a split's images once into uint8 arrays: arrays as they are, image files resized and
cached on disk (memory-mapped), keyed by the split's fingerprint so a change rebuilds them."""

from __future__ import annotations

import os

import numpy as np
import torch
from datasets import Array2D, Array3D, Dataset
from datasets import Image as ImageFeature
from PIL import Image

from recipes.core.cache import cache_root

GRAY_MODES = ("1", "L", "I", "I;16", "F")


def image_channels(split: Dataset, column: str) -> int:
    """1 for arrays without a channel axis or grayscale image files, else 3."""
    feature = split.features[column]
    if isinstance(feature, Array2D):
        return 1
    if isinstance(feature, Array3D):
        return feature.shape[0] if feature.shape[0] in (1, 3) else feature.shape[-1]
    first = split[0][column] if len(split) else None
    return 1 if first is not None and first.mode in GRAY_MODES else 3


def array_images(split: Dataset, column: str) -> torch.Tensor:
    """An Array2D/Array3D column straight from Arrow, without a Python loop."""
    table = split.with_format("arrow")[:]
    chunks = table.column(column).chunks
    feature = split.features[column]
    flat = np.concatenate([c.storage.flatten().flatten().to_numpy() for c in chunks])
    images = flat.reshape(len(split), *feature.shape).astype(np.uint8, copy=False)
    if images.ndim == 3:
        images = images[:, None]
    elif images.shape[-1] in (1, 3):  # channels last
        images = images.transpose(0, 3, 1, 2)
    return torch.from_numpy(np.ascontiguousarray(images))


def file_images(split: Dataset, column: str, size: int, channels: int) -> np.ndarray:
    """Every image file decoded once, resized to size x size, as uint8 [N, C, size, size]."""
    mode = "L" if channels == 1 else "RGB"
    out = np.empty((len(split), channels, size, size), dtype=np.uint8)
    for i, image in enumerate(split[column]):
        image = image.convert(mode)
        if image.size != (size, size):
            image = image.resize((size, size), Image.BILINEAR)
        pixels = np.asarray(image)
        out[i] = pixels[None] if channels == 1 else pixels.transpose(2, 0, 1)
    return out


def decode(split: Dataset, column: str, size: int, channels: int) -> torch.Tensor:
    """uint8 images [N, C, H, W]: arrays at their own size, image files at `size` via the cache."""
    if not isinstance(split.features[column], ImageFeature):
        return array_images(split, column)
    path = cache_root() / "decoded" / f"{split._fingerprint}-{size}-{channels}.npy"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.stem + f".{os.getpid()}.part.npy")
        np.save(partial, file_images(split, column, size, channels))
        partial.replace(path)
    return torch.from_numpy(np.load(path, mmap_mode="c"))  # copy-on-write: a writable tensor

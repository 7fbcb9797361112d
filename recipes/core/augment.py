"""Augmentation on decoded uint8 batches: a random resized crop and flip per image, all images
of a batch in one `grid_sample`, then normalisation; no PIL and no per-image Python."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

ATTEMPTS = 10  # torchvision's RandomResizedCrop tries 10 boxes before its fallback


def crop_boxes(
    n: int, height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float]
) -> torch.Tensor:
    """torchvision's RandomResizedCrop.get_params for n images at once: (top, left, h, w) rows.

    Each image draws up to 10 boxes of area U(scale) x its area and log-uniform aspect ratio,
    keeps the first that fits, and otherwise falls back to the largest centred box in `ratio`.
    """
    area = height * width
    target = area * torch.empty(n, ATTEMPTS).uniform_(*scale)
    aspect = torch.exp(torch.empty(n, ATTEMPTS).uniform_(math.log(ratio[0]), math.log(ratio[1])))
    w = torch.sqrt(target * aspect).round()
    h = torch.sqrt(target / aspect).round()
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = torch.where(fits.any(1), fits.float().argmax(1), -1)
    boxes = torch.empty(n, 4)
    found = first >= 0
    rows = torch.arange(n)[found]
    h_found, w_found = h[rows, first[found]], w[rows, first[found]]
    boxes[found, 2], boxes[found, 3] = h_found, w_found
    boxes[found, 0] = torch.floor(torch.rand(len(rows)) * (height - h_found + 1))
    boxes[found, 1] = torch.floor(torch.rand(len(rows)) * (width - w_found + 1))
    boxes[~found] = torch.tensor(centre_box(height, width, ratio), dtype=torch.float)
    return boxes


def centre_box(height: int, width: int, ratio: tuple[float, float]) -> tuple[int, int, int, int]:
    """torchvision's fallback: the whole image, cut to the nearest allowed aspect ratio."""
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def crop_grids(boxes: torch.Tensor, flip: torch.Tensor, height: int, width: int, size: int):
    """Sampling grids that cut each box out of its image, resize it to size x size, and mirror
    it where `flip` is true (an affine map per image, for `grid_sample`)."""
    top, left, h, w = boxes.unbind(1)
    theta = torch.zeros(len(boxes), 2, 3)
    theta[:, 0, 0] = w / width * torch.where(flip, -1.0, 1.0)
    theta[:, 1, 1] = h / height
    theta[:, 0, 2] = (2 * left + w) / width - 1
    theta[:, 1, 2] = (2 * top + h) / height - 1
    return F.affine_grid(theta, [len(boxes), 1, size, size], align_corners=False)


@dataclass
class BatchTransform:
    """uint8 images [N, C, H, W] -> normalised float [N, C, size, size], augmented if `train`."""

    size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    train: bool = False
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip: float = 0.0

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float()
        n, _, height, width = x.shape
        if self.train:
            boxes = crop_boxes(n, height, width, self.scale, self.ratio)
            flip = torch.rand(n) < self.hflip
            grid = crop_grids(boxes, flip, height, width, self.size).to(x.device)
            x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        elif (height, width) != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", antialias=True)
        mean = torch.tensor(self.mean, device=x.device).view(1, -1, 1, 1) * 255
        std = torch.tensor(self.std, device=x.device).view(1, -1, 1, 1) * 255
        return (x - mean) / std

"""Frozen-backbone features, computed once and cached on disk for linear probes."""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from recipes.core.arguments import DataArguments
from recipes.core.cache import cache_root
from recipes.core.data import ImageData, build_transforms, make_loader
from recipes.core.errors import RecipeError
from recipes.core.models import head_name, stage_names

POOLED = "pooled"


@dataclass
class Features:
    """Feature matrices of one split (one per layer), its labels, and where they came from."""

    layers: dict[str, torch.Tensor]
    labels: torch.Tensor
    status: str
    seconds: float


def default_cache_dir() -> Path:
    return cache_root() / "features"


def layer_name(stage: int | None) -> str:
    return POOLED if stage is None else f"stage_{stage}"


def check_stages(model: torch.nn.Module, stages: list[int | None]) -> None:
    """Intermediate stages are numbered as timm's `feature_info`; refuse one that is not there."""
    names = stage_names(model)
    for stage in stages:
        if stage is not None and not 0 <= stage < len(names):
            raise RecipeError(
                f"{type(model).__name__} has {len(names)} feature stages (0 to {len(names) - 1}: "
                f"{', '.join(names)}); stage {stage} does not exist"
            )


def pool(features: torch.Tensor) -> torch.Tensor:
    """Global average over positions: NCHW maps and NLC tokens both become N x C."""
    if features.ndim == 4:
        return features.mean(dim=(2, 3))
    return features.mean(dim=1) if features.ndim == 3 else features


def layer_outputs(model: torch.nn.Module, images: torch.Tensor, stages: list[int | None]) -> dict:
    """Pooled pre-logit features and/or pooled intermediate stages, in one forward pass each."""
    out = {}
    if None in stages:
        pooled = model.forward_head(model.forward_features(images), pre_logits=True)
        if pooled.ndim != 2:
            raise RecipeError(
                f"{type(model).__name__} gives unpooled features of shape {tuple(pooled.shape)}; "
                "use a model with global pooling, or probe an intermediate stage"
            )
        out[POOLED] = pooled
    indices = [s for s in stages if s is not None]
    if indices:
        maps = model.forward_intermediates(images, indices=indices, intermediates_only=True)
        out.update({layer_name(s): pool(m) for s, m in zip(indices, maps, strict=True)})
    return {k: v.float().flatten(1) for k, v in out.items()}


@torch.no_grad()
def extract(
    model, loader, stages: list[int | None], device, precision: str
) -> tuple[dict, torch.Tensor]:
    """Run the frozen model once over a split in eval mode (no augmentation)."""
    model.eval().to(device)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    chunks: dict[str, list[torch.Tensor]] = {}
    labels = []
    for images, y in loader:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            outputs = layer_outputs(model, images.to(device), stages)
        for name, value in outputs.items():
            chunks.setdefault(name, []).append(value.cpu())
        labels.append(y)
    return {k: torch.cat(v) for k, v in chunks.items()}, torch.cat(labels)


def weights_digest(model: torch.nn.Module) -> str:
    """A hash of every backbone weight and buffer (the classifier does not change features)."""
    skip = head_name(model) + "."
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        if not name.startswith(skip):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:20]


def cache_key(
    model, model_name: str, data: ImageData, split: str, data_config: dict, stages, precision
) -> dict:
    """Everything the features depend on: architecture, weights, data, preprocessing, layers."""
    return {
        "model": model_name,
        "weights": weights_digest(model),
        "data": data.splits[split]._fingerprint,
        "split": split,
        "preprocessing": json.dumps(
            {
                k: data_config.get(k)
                for k in ("input_size", "mean", "std", "interpolation", "crop_pct")
            }
        ),
        "layers": ",".join(layer_name(s) for s in stages),
        "precision": precision,
    }


def cache_path(cache_dir: Path, key: dict, dataset: str) -> Path:
    layers = key["layers"].replace(",", "+")
    return (
        cache_dir
        / f"{key['model']}-{dataset.replace('/', '_')}-{key['split']}-{layers}.safetensors"
    )


def read_cache(path: Path, key: dict) -> tuple[Features | None, str]:
    """The cached features when every key field matches; otherwise why it must be rebuilt."""
    if not path.is_file():
        return None, "built"
    with safe_open(str(path), "pt") as f:
        saved = f.metadata() or {}
        differ = [k for k in key if saved.get(k) != key[k]]
        if differ:
            return None, f"rebuilt ({', '.join(differ)} differ)"
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safetensors handle)
    labels = tensors.pop("labels")
    return Features(tensors, labels, "reused", 0.0), "reused"


def load_features(
    model: torch.nn.Module,
    model_name: str,
    data: ImageData,
    split: str,
    data_config: dict,
    data_args: DataArguments,
    stages: list[int | None] | None = None,
    cache_dir: str | Path | None = None,
    device: torch.device | None = None,
    precision: str = "no",
    batch_size: int = 256,
) -> Features:
    """Features of one split from the cache when it was made for this model, weights and data."""
    stages = stages or [None]
    check_stages(model, stages)
    key = cache_key(model, model_name, data, split, data_config, stages, precision)
    path = cache_path(Path(cache_dir or default_cache_dir()), key, data_args.dataset)
    cached, status = read_cache(path, key)
    if cached is not None:
        return cached
    if status != "built":
        print(f"feature cache {path} was made for another setup: {status}")
    start = time.perf_counter()
    _, eval_tf = build_transforms(data_args, data_config, augment=False)
    loader = make_loader(data, split, eval_tf, batch_size, False, data_args.num_workers)
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    layers, labels = extract(model, loader, stages, device, precision)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.tmp")
    save_file({**layers, "labels": labels}, str(partial), metadata=key)
    os.replace(partial, path)
    return Features(layers, labels, status, time.perf_counter() - start)

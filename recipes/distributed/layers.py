"""timm models as layer lists for pipeline stages, and the pipeline's launch-shape checks."""

from __future__ import annotations

from collections.abc import Callable

import torch
from timm.models.convnext import ConvNeXt
from timm.models.efficientnet import EfficientNet
from timm.models.resnet import ResNet
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from recipes.core.errors import RecipeError


class ModelPart(nn.Module):
    """Some attributes of a timm model and a function of them: a stage holds only its weights."""

    def __init__(self, model: nn.Module, names: tuple[str, ...], function: Callable):
        super().__init__()
        for name in names:
            setattr(self, name, getattr(model, name))
        self.function = function

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.function(self, x)


class Contiguous(nn.Module):
    """A layer whose output is contiguous, as sending it to the next stage requires."""

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x).contiguous()


def _vit_embed(part: ModelPart, x: torch.Tensor) -> torch.Tensor:
    x = VisionTransformer._pos_embed(part, part.patch_embed(x))
    return part.norm_pre(part.patch_drop(x))


def _vit_head(part: ModelPart, x: torch.Tensor) -> torch.Tensor:
    x = VisionTransformer.pool(part, part.norm(x))
    return part.head(part.head_drop(part.fc_norm(x)))


VIT_EMBED = (
    "patch_embed", "cls_token", "reg_token", "pos_embed", "pos_drop", "patch_drop", "norm_pre",
    "dynamic_img_size", "no_embed_class", "num_prefix_tokens",
)  # fmt: skip
VIT_HEAD = (
    "norm", "attn_pool", "pool_include_prefix", "global_pool", "num_prefix_tokens", "fc_norm",
    "head_drop", "head",
)  # fmt: skip


def resnet_layers(model: ResNet) -> list[nn.Module]:
    stem = nn.Sequential(model.conv1, model.bn1, model.act1, model.maxpool)
    blocks = [
        block
        for stage in (model.layer1, model.layer2, model.layer3, model.layer4)
        for block in stage
    ]
    return [stem, *blocks, nn.Sequential(model.global_pool, nn.Dropout(model.drop_rate), model.fc)]


def convnext_layers(model: ConvNeXt) -> list[nn.Module]:
    blocks = [part for stage in model.stages for part in (stage.downsample, *stage.blocks)]
    return [model.stem, *blocks, nn.Sequential(model.norm_pre, model.head)]


def efficientnet_layers(model: EfficientNet) -> list[nn.Module]:
    head = nn.Sequential(
        model.conv_head, model.bn2, model.global_pool, nn.Dropout(model.drop_rate), model.classifier
    )
    blocks = [block for stage in model.blocks for block in stage]
    return [nn.Sequential(model.conv_stem, model.bn1), *blocks, head]


def vit_layers(model: VisionTransformer) -> list[nn.Module]:
    embed = ModelPart(model, VIT_EMBED, _vit_embed)
    return [embed, *model.blocks, ModelPart(model, VIT_HEAD, _vit_head)]


# timm model class -> how it becomes a sequence of layers (stem, blocks, head).
SPLITTERS: dict[type, Callable[[nn.Module], list[nn.Module]]] = {
    ResNet: resnet_layers,
    ConvNeXt: convnext_layers,
    EfficientNet: efficientnet_layers,
    VisionTransformer: vit_layers,
}


def pipeline_layers(model: nn.Module) -> list[nn.Module]:
    """The model as the layer sequence a DeepSpeed PipelineModule partitions into stages."""
    for cls, split in SPLITTERS.items():
        if isinstance(model, cls):
            return [Contiguous(layer) for layer in split(model)]
    families = ", ".join(sorted(cls.__name__ for cls in SPLITTERS))
    raise RecipeError(
        f"pipeline parallelism cannot split a {type(model).__name__}; it splits {families} models: "
        "choose one of those or use data parallelism (accelerate_configs/)"
    )


def check_pipeline_shape(
    world: int, stages: int, num_layers: int, batch: int, micro_batches: int
) -> int:
    """Stages, replicas and micro-batches must fit together; returns the number of replicas."""
    if stages > num_layers:
        raise RecipeError(
            f"pipeline_stages {stages} is more than the model's {num_layers} layers; "
            f"use at most {num_layers} stages"
        )
    if world % stages:
        raise RecipeError(
            f"{world} processes do not divide into {stages} pipeline stages; launch a multiple of "
            f"{stages} processes (stages x data-parallel replicas)"
        )
    replicas = world // stages
    if batch % micro_batches:
        raise RecipeError(
            f"global batch {batch * replicas} ({batch} per replica x {replicas} replicas) does not "
            f"split into {micro_batches} micro-batches per replica; "
            "make per_device_train_batch_size a multiple of micro_batches"
        )
    return replicas


def bubble_fraction(stages: int, micro_batches: int) -> float:
    """GPipe's idle fraction of a pipeline step: (S - 1) / (M + S - 1)."""
    return (stages - 1) / (micro_batches + stages - 1)

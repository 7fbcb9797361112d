"""Megatron-style tensor-parallel plans for timm models: which Linear layers split, and how.

ViT / DeiT (`vision_transformer.Block`): attention heads split across the tensor-parallel ranks
(`attn.qkv` column-wise, its rows regrouped so each rank holds q, k and v of its own heads;
`attn.proj` row-wise), and the MLP split the same way (`mlp.fc1` column-wise, `mlp.fc2`
row-wise): one all-reduce after `proj` and one after `fc2` in the forward pass, two in the
backward pass. ConvNeXt (`convnext.ConvNeXtBlock`): the MLP (`mlp.fc1` / `mlp.fc2`, Linear
layers on channels-last activations) splits like the ViT MLP, one all-reduce per block each
way; the depthwise 7x7 convolution and its LayerNorm stay whole (a depthwise convolution is
per channel and cheap, and the norm needs every channel). ResNet or EfficientNet blocks are
dense 3x3 / 1x1 convolutions with BatchNorm between them: splitting them needs an all-reduce
(or all-gather) per convolution, so they get no plan. Everything outside the blocks (stem, patch
embedding, tokens, norms, head) is replicated.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from timm.models.convnext import ConvNeXt, ConvNeXtBlock
from timm.models.vision_transformer import Block, VisionTransformer
from torch import nn

from recipes.core.errors import RecipeError

FAMILIES = "VisionTransformer (ViT, DeiT) and ConvNeXt"


@dataclass
class TensorPlan:
    """Each split layer's style ('colwise' or 'rowwise') and each qkv weight's row order."""

    size: int
    styles: dict[str, str] = field(default_factory=dict)
    qkv_rows: dict[str, torch.Tensor] = field(default_factory=dict)


def qkv_rows(num_heads: int, head_dim: int, size: int) -> torch.Tensor:
    """Row order of a fused qkv weight so rank r's contiguous shard is [q | k | v] of its heads."""
    rows = torch.arange(3 * num_heads * head_dim).view(3, num_heads, head_dim)
    local = num_heads // size
    return torch.cat([rows[:, r * local : (r + 1) * local].reshape(-1) for r in range(size)])


def check_divides(where: str, name: str, value: int, size: int) -> None:
    """Refuse a dimension that the tensor-parallel size does not divide."""
    if value % size:
        raise RecipeError(
            f"tensor_parallel_size {size} does not divide {name} {value} of {where}; "
            f"set tensor_parallel_size to a divisor of {value} or choose another model"
        )


def plan_mlp(plan: TensorPlan, name: str, mlp: nn.Module) -> None:
    """fc1 column-wise, fc2 row-wise: the hidden units split, one all-reduce after fc2."""
    if not isinstance(mlp.norm, nn.Identity):
        raise RecipeError(f"{name}.mlp normalises its hidden units; no tensor-parallel plan")
    check_divides(f"{name}.mlp", "hidden dimension", mlp.fc1.out_features, plan.size)
    plan.styles[f"{name}.mlp.fc1"] = "colwise"
    plan.styles[f"{name}.mlp.fc2"] = "rowwise"


def plan_attention(plan: TensorPlan, name: str, attn: nn.Module) -> None:
    """qkv column-wise (rows regrouped by head), proj row-wise: the heads split across ranks."""
    if getattr(attn, "gate", None) is not None or not isinstance(attn.norm, nn.Identity):
        raise RecipeError(f"{name}.attn is gated or scale-normed; no tensor-parallel plan")
    check_divides(f"{name}.attn", "num_heads", attn.num_heads, plan.size)
    plan.styles[f"{name}.attn.qkv"] = "colwise"
    plan.styles[f"{name}.attn.proj"] = "rowwise"
    plan.qkv_rows[f"{name}.attn.qkv"] = qkv_rows(attn.num_heads, attn.head_dim, plan.size)


def make_plan(model: nn.Module, size: int) -> TensorPlan:
    """The plan of a timm model, or a one-line refusal naming the families that have one."""
    plan = TensorPlan(size)
    if isinstance(model, VisionTransformer):
        for name, block in model.named_modules():
            if isinstance(block, Block) and type(block.attn).__name__ == "Attention":
                plan_attention(plan, name, block.attn)
                plan_mlp(plan, name, block.mlp)
    elif isinstance(model, ConvNeXt):
        for name, block in model.named_modules():
            linear = isinstance(getattr(getattr(block, "mlp", None), "fc1", None), nn.Linear)
            if isinstance(block, ConvNeXtBlock) and linear:  # not conv_mlp's 1x1 convolutions
                plan_mlp(plan, name, block.mlp)
    if not plan.styles:
        raise RecipeError(
            f"parallel: tensor has no plan for {type(model).__name__} models; "
            f"plans exist for {FAMILIES}; use parallel: data or pipeline"
        )
    return plan


def regroup_qkv(model: nn.Module, plan: TensorPlan, inverse: bool = False) -> None:
    """Reorder the fused qkv rows (weight and bias) into per-rank head groups, or back."""
    with torch.no_grad():
        for name, rows in plan.qkv_rows.items():
            for param in model.get_submodule(name).parameters(recurse=False):
                param.copy_(unpermute(param, rows) if inverse else param[rows])


def unpermute(tensor: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """The tensor whose rows, taken in `rows` order, give `tensor`: timm's own layout back."""
    original = torch.empty_like(tensor)
    original[rows] = tensor
    return original


def shard_model(model: nn.Module, plan: TensorPlan, mesh) -> nn.Module:
    """Split the planned layers over the mesh's "tp" dimension; each rank keeps its slice."""
    from torch.distributed.tensor.parallel import (
        ColwiseParallel,
        RowwiseParallel,
        parallelize_module,
    )

    regroup_qkv(model, plan)
    styles = {"colwise": ColwiseParallel, "rowwise": RowwiseParallel}
    parallelize_module(model, mesh["tp"], {k: styles[v]() for k, v in plan.styles.items()})
    for name in plan.qkv_rows:  # the attention reshapes with its local head count
        attn = model.get_submodule(name.rpartition(".")[0])
        attn.num_heads //= plan.size
        attn.attn_dim //= plan.size
    return model


def full_state_dict(model: nn.Module, plan: TensorPlan) -> dict[str, torch.Tensor]:
    """Every weight whole on every rank (a collective), qkv rows back in timm's order."""
    from torch.distributed.tensor import DTensor

    state = {}
    for key, value in model.state_dict().items():
        value = value.full_tensor() if isinstance(value, DTensor) else value
        layer = key.rpartition(".")[0]
        if layer in plan.qkv_rows:
            value = unpermute(value, plan.qkv_rows[layer])
        state[key] = value.detach().cpu()
    return state


def local_fraction(model: nn.Module, plan: TensorPlan) -> float:
    """Elements of the split layers this rank holds, over their full count: about 1/size."""
    from torch.distributed.tensor import DTensor

    held = full = 0
    for name in plan.styles:
        for param in model.get_submodule(name).parameters(recurse=False):
            local = param.to_local() if isinstance(param, DTensor) else param
            held, full = held + local.numel(), full + param.numel()
    return held / full

"""What tensor x data parallelism adds between backward and the optimizer step, and its state:
gradients averaged over data-parallel replicas, clipped by the norm of the whole model, and
checkpoints of sliced weights with torch.distributed.checkpoint."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from recipes.core.errors import RecipeError


def local(tensor: torch.Tensor) -> torch.Tensor:
    """This rank's part of a DTensor (a view: writing it writes the DTensor), else the tensor."""
    from torch.distributed.tensor import DTensor

    return tensor.to_local() if isinstance(tensor, DTensor) else tensor


def is_sliced(tensor: torch.Tensor) -> bool:
    """True for a DTensor sharded over its mesh (each rank holds another slice)."""
    from torch.distributed.tensor import DTensor

    return isinstance(tensor, DTensor) and any(p.is_shard() for p in tensor.placements)


def average_gradients(model: nn.Module, group, replicas: int) -> None:
    """Mean of every gradient over the data-parallel replicas, in one all-reduce."""
    if replicas == 1:
        return
    grads = [local(p.grad) for p in model.parameters() if p.grad is not None]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, group=group)
    flat /= replicas
    for grad, part in zip(grads, flat.split([g.numel() for g in grads]), strict=True):
        grad.copy_(part.view_as(grad))


def clip_gradients(model: nn.Module, max_norm: float, tp_group) -> float:
    """torch's clip_grad_norm_ over sliced and whole gradients: slices' squares summed over tp."""
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    squares = [local(g).float().pow(2).sum() for g in grads]
    sliced = sum((s for s, g in zip(squares, grads, strict=True) if is_sliced(g)), torch.zeros(()))
    whole = sum(
        (s for s, g in zip(squares, grads, strict=True) if not is_sliced(g)), torch.zeros(())
    )
    sliced = sliced.to(squares[0].device)
    dist.all_reduce(sliced, group=tp_group)
    norm = (sliced + whole.to(sliced.device)).sqrt()
    scale = (max_norm / (norm + 1e-6)).clamp(max=1.0)
    for grad in grads:
        local(grad).mul_(scale.to(grad.dtype))
    return norm.item()


def save_sliced(path: Path, model: nn.Module, optimizer, scheduler) -> None:
    """Every rank writes its slices (torch.distributed.checkpoint) and its schedule and RNG."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    model_state, optimizer_state = get_state_dict(model, optimizer)
    dcp.save({"model": model_state, "optimizer": optimizer_state}, checkpoint_id=str(path))
    extra = {"scheduler": scheduler.state_dict(), "rng": torch.get_rng_state()}
    if torch.cuda.is_available():
        extra["cuda_rng"] = torch.cuda.get_rng_state()
    torch.save(extra, path / f"rank_{dist.get_rank()}.pt")


def check_layout(path: Path) -> None:
    """A checkpoint holds one file per rank: resume only with as many processes as wrote it."""
    written, world = len(list(path.glob("rank_*.pt"))), dist.get_world_size()
    if written != world:
        raise RecipeError(
            f"checkpoint {path} was written by {written} processes, this launch has {world}; "
            f"launch {written}, or set --output_dir to a new folder"
        )


def load_sliced(path: Path, model: nn.Module, optimizer, scheduler) -> None:
    """The slices, optimizer state, schedule and RNG that `save_sliced` wrote for this rank."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    check_layout(path)
    model_state, optimizer_state = get_state_dict(model, optimizer)
    state = {"model": model_state, "optimizer": optimizer_state}
    dcp.load(state, checkpoint_id=str(path))
    set_state_dict(
        model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"]
    )
    extra = torch.load(path / f"rank_{dist.get_rank()}.pt", weights_only=False)
    scheduler.load_state_dict(extra["scheduler"])
    torch.set_rng_state(extra["rng"])
    if "cuda_rng" in extra:
        torch.cuda.set_rng_state(extra["cuda_rng"])

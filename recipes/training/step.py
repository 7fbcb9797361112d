"""One update step, one evaluation pass and the checks every route runs between them."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from accelerate import Accelerator

from recipes.core import runs
from recipes.core.arguments import TrainingArguments
from recipes.core.errors import RecipeError

if TYPE_CHECKING:
    from recipes.schedules import StepPlan

# Called on the main process after each epoch with (epoch, metrics); True stops the run.
EpochHook = Callable[[int, dict], bool]


def update(accelerator: Accelerator, model, optimizer, images, labels, t: TrainingArguments):
    """One forward/backward; the optimizer steps (after clipping) only at accumulation ends.

    Returns (loss x images, correct, images) of the batch, summed later for the logs.
    """
    if t.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    with accelerator.accumulate(model):
        logits = model(images)
        loss = torch.nn.functional.cross_entropy(
            logits.float(), labels, label_smoothing=t.label_smoothing
        )
        accelerator.backward(loss)
        if accelerator.sync_gradients and t.max_grad_norm:
            accelerator.clip_grad_norm_(model.parameters(), t.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    count = torch.tensor(float(len(labels)), device=loss.device)
    return torch.stack([loss.detach() * count, (logits.argmax(-1) == labels).sum(), count])


def evaluate(model, loader, accelerator: Accelerator, channels_last: bool = False) -> dict:
    """Mean cross-entropy and top-1 accuracy over a whole split, gathered from all processes."""
    model.eval()
    losses, hits = [], []
    with torch.no_grad():
        for images, labels in loader:
            if channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            with accelerator.autocast():
                logits = model(images)
            loss = torch.nn.functional.cross_entropy(logits.float(), labels, reduction="none")
            loss, hit = accelerator.gather_for_metrics((loss, logits.argmax(-1) == labels))
            losses.append(loss)
            hits.append(hit)
    return {
        "loss": torch.cat(losses).mean().item(),
        "accuracy": torch.cat(hits).float().mean().item(),
        "count": len(torch.cat(hits)),
    }


def check_finite(loss: float, step: int, run_dir: Path) -> None:
    """Stop on a NaN or infinite loss; the checkpoints already written stay as they are."""
    if not math.isfinite(loss):
        last = runs.checkpoint_dirs(run_dir)
        kept = f"last good checkpoint: {last[-1]}" if last else "no checkpoint was written yet"
        raise RecipeError(
            f"loss became {loss} at step {step}; training stopped ({kept}); "
            "lower learning_rate, add warmup or check the inputs"
        )


def log_step(accelerator: Accelerator, sums, lr: float, state: dict, position: float, run_dir):
    """Loss since the last log, averaged over all processes, to the tracker and steps.jsonl."""
    loss_sum, _, count = accelerator.reduce(sums, "sum").tolist()
    record = {"step": state["step"], "epoch": position, "lr": lr, "loss": loss_sum / max(count, 1)}
    check_finite(record["loss"], state["step"], run_dir)
    accelerator.log({"train/loss": record["loss"], "lr": record["lr"]}, step=state["step"])
    if accelerator.is_main_process:
        runs.append_jsonl(run_dir / runs.STEPS_FILE, record)
    return record["loss"]


def epoch_metrics(accelerator: Accelerator, model, loader, sums, ema, channels_last: bool) -> dict:
    """Training loss/accuracy of the epoch, validation of the weights and of their EMA."""
    loss_sum, correct, count = accelerator.reduce(sums, "sum").tolist()
    metrics = {
        "train_loss": loss_sum / max(count, 1.0),
        "train_accuracy": correct / max(count, 1.0),
    }
    val = evaluate(model, loader, accelerator, channels_last)
    metrics.update(val_loss=val["loss"], val_accuracy=val["accuracy"], val_samples=val["count"])
    if ema is not None:
        ema_val = evaluate(ema.module, loader, accelerator, channels_last)
        metrics.update(ema_val_loss=ema_val["loss"], ema_val_accuracy=ema_val["accuracy"])
    return metrics


def ask_hook(hook: EpochHook | None, epoch: int, record: dict, is_main: bool) -> float:
    """The hook's answer on the main process as a number every process can reduce (1: stop)."""
    return float(is_main and hook is not None and bool(hook(epoch, record)))


def run_line(run_dir: Path, num_classes: int, plan: StepPlan, processes: int, layout: str = "",
             resumed_at: int | None = None, note: str = "") -> str:  # fmt: skip
    """The line every route prints as a run starts: data, updates, batch, LR, processes."""
    return (
        f"run {run_dir}: {num_classes} classes, {plan.total} updates, global batch "
        f"{plan.global_batch}, lr {plan.lr:.3g}, {processes} process(es)"
        + (f": {layout}" if layout else "")
        + (f", resumed at step {resumed_at}" if resumed_at is not None else "")
        + (f"; {note}" if note else "")
    )


def stop_requested(accelerator: Accelerator, hook: EpochHook | None, epoch: int, record) -> bool:
    """Ask the hook on the main process and share its answer with every process."""
    if hook is None:
        return False
    flag = torch.tensor(ask_hook(hook, epoch, record, accelerator.is_main_process))
    return bool(accelerator.reduce(flag.to(accelerator.device), "sum").item())


def replica_spread(accelerator: Accelerator, model: torch.nn.Module) -> float:
    """Largest difference of per-tensor weight sums between ranks: 0 when replicas agree."""
    sums = torch.stack([p.detach().float().sum() for p in model.parameters()])
    gathered = accelerator.gather(sums[None].to(accelerator.device)).view(
        accelerator.num_processes, -1
    )
    return (gathered - gathered[0]).abs().max().item()


def save_checkpoint(accelerator: Accelerator, run_dir: Path, state: dict, keep: int) -> None:
    """Accelerate state (model, optimizer, scheduler, EMA, RNG) plus the position as JSON."""
    path = run_dir / runs.CHECKPOINTS / f"step_{state['step']}"
    accelerator.save_state(str(path))
    if accelerator.is_main_process:
        runs.write_json(path / runs.STATE_FILE, state)
        runs.prune_checkpoints(run_dir, keep)
    accelerator.wait_for_everyone()

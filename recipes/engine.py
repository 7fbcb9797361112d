"""The one Accelerate training loop that every recipe uses."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

import torch
from accelerate import Accelerator, skip_first_batches
from accelerate.utils import set_seed
from timm.utils import ModelEmaV3
from tqdm.auto import tqdm

from recipes import runs
from recipes.config import RecipeConfig
from recipes.data import build_transforms, make_loader
from recipes.errors import RecipeError
from recipes.models import save_model, train_mode
from recipes.parallel import whole_weights, zero_stage
from recipes.run_setup import Setup, build_setup, make_accelerator
from recipes.schedules import build_optimizer, build_scheduler, epochs_to_steps, scale_learning_rate
from recipes.tracking import tracker_setup

# Called on the main process after each epoch with (epoch, metrics); True stops the run.
EpochHook = Callable[[int, dict], bool]


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
    }


def save_checkpoint(accelerator: Accelerator, run_dir: Path, state: dict, keep: int) -> None:
    """Accelerate state (model, optimizer, scheduler, EMA, RNG) plus the position as JSON."""
    path = run_dir / runs.CHECKPOINTS / f"step_{state['step']}"
    accelerator.save_state(str(path))
    if accelerator.is_main_process:
        runs.write_json(path / runs.STATE_FILE, state)
        runs.prune_checkpoints(run_dir, keep)
    accelerator.wait_for_everyone()


def snapshot_steps(config: RecipeConfig, total_steps: int, warmup_steps: int = 0) -> set[int]:
    """Last update of each cosine-with-restarts cycle (cycles follow the warmup): a snapshot."""
    if not config.training.snapshot_ensemble:
        return set()
    cycles = int(config.training.scheduler_kwargs.get("num_cycles", 1))
    span = total_steps - warmup_steps
    return {warmup_steps + -(-span * (k + 1) // cycles) for k in range(cycles)}


def planned_steps(config: RecipeConfig, batches_per_epoch: int, accelerator: Accelerator) -> dict:
    """The number of optimizer updates and the schedule, counted once after `prepare`."""
    t = config.training
    per_epoch = math.ceil(batches_per_epoch / t.gradient_accumulation_steps)
    total = int(t.num_epochs * per_epoch)
    warmup = t.warmup_steps or round(t.warmup_epochs * per_epoch)
    global_batch = (
        t.per_device_train_batch_size * accelerator.num_processes * t.gradient_accumulation_steps
    )
    lr = scale_learning_rate(t.learning_rate, global_batch, t.base_batch_size, t.scale_lr)
    return dict(per_epoch=per_epoch, total=total, warmup=warmup, global_batch=global_batch, lr=lr)


def update(accelerator: Accelerator, model, optimizer, images, labels, t) -> tuple:
    """One forward/backward; the optimizer steps (after clipping) only at accumulation ends."""
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


def check_finite(loss: float, step: int, run_dir: Path) -> None:
    """Stop on a NaN or infinite loss; the checkpoints already written stay as they are."""
    if not math.isfinite(loss):
        last = runs.checkpoint_dirs(run_dir)
        kept = f"last good checkpoint: {last[-1]}" if last else "no checkpoint was written yet"
        raise RecipeError(
            f"loss became {loss} at step {step}; training stopped ({kept}); "
            "lower learning_rate, add warmup or check the inputs"
        )


def log_step(
    accelerator: Accelerator, sums, scheduler, state: dict, epoch_pos: float, run_dir
) -> float:
    """Loss since the last log, averaged over all processes, to the tracker and steps.jsonl."""
    loss_sum, _, count = accelerator.reduce(sums, "sum").tolist()
    record = {"step": state["step"], "epoch": epoch_pos, "lr": scheduler.get_last_lr()[0]}
    record["loss"] = loss_sum / max(count, 1.0)
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
    metrics.update(val_loss=val["loss"], val_accuracy=val["accuracy"])
    if ema is not None:
        ema_val = evaluate(ema.module, loader, accelerator, channels_last)
        metrics.update(ema_val_loss=ema_val["loss"], ema_val_accuracy=ema_val["accuracy"])
    return metrics


def stop_requested(
    accelerator: Accelerator, hook: EpochHook | None, epoch: int, record: dict
) -> bool:
    """Ask the hook on the main process and share its answer with every process."""
    if hook is None:
        return False
    flag = torch.tensor(float(accelerator.is_main_process and bool(hook(epoch, record))))
    return bool(accelerator.reduce(flag.to(accelerator.device), "sum").item())


def replica_spread(accelerator: Accelerator, model: torch.nn.Module) -> float:
    """Largest difference of per-tensor weight sums between ranks: 0 when replicas agree."""
    sums = torch.stack([p.detach().float().sum() for p in model.parameters()])
    gathered = accelerator.gather(sums[None].to(accelerator.device)).view(
        accelerator.num_processes, -1
    )
    return (gathered - gathered[0]).abs().max().item()


def save_main(accelerator: Accelerator, model, directory: Path, setup: Setup) -> None:
    """Every process gathers ZeRO-3 shards, the main one writes the whole model."""
    with whole_weights(accelerator, model):
        if accelerator.is_main_process:
            save_model(model, directory, setup.data.label_names, setup.data_config)


def finish(
    accelerator, config, setup: Setup, model, ema, run_dir: Path, state: dict, stopped: bool
) -> dict:
    """Save the last (and EMA) model, the learning curves (diagnosed) and results.json."""
    from recipes.curves import diagnose, format_findings, load_history, plot_curves

    accelerator.wait_for_everyone()
    history = runs.read_jsonl(run_dir / runs.EPOCHS_FILE)
    with whole_weights(accelerator, model):
        spread = replica_spread(accelerator, model)
        if accelerator.is_main_process:
            save_model(model, run_dir / "model", setup.data.label_names, setup.data_config)
    results = {
        "run_dir": str(run_dir),
        "num_processes": accelerator.num_processes,
        "replica_spread": spread,
        "train_examples": len(setup.data.splits["train"]),
        "steps": state["step"],
        "epochs": state["epoch"],
        "stopped_early": stopped,
        "best_val_accuracy": state["best_accuracy"],
        "best_epoch": state["best_epoch"],
        **{
            k: v
            for k, v in (history[-1] if history else {}).items()
            if k.startswith(("val_", "ema_val_", "train_"))
        },
    }
    if accelerator.is_main_process:
        if ema is not None:
            save_model(ema.module, run_dir / "ema_model", setup.data.label_names, setup.data_config)
        if history:
            plot_curves(run_dir, run_dir / "curves.png")
            print(format_findings(diagnose(load_history(run_dir))))
        runs.write_json(run_dir / runs.RESULTS_FILE, results)
    accelerator.end_training()
    return results


def train(config: RecipeConfig, epoch_hook: EpochHook | None = None) -> dict:
    """Train, evaluate each epoch, checkpoint, and save the model; returns the final metrics."""
    t = config.training
    set_seed(t.seed)
    torch.set_flush_denormal(True)  # tiny Adam moments as denormals made CPU steps 10x slower
    run_dir = runs.run_dir(config)
    log_with, init_kwargs, tracker_note = tracker_setup(
        t.report_to, run_dir, runs.run_name(config), t.wandb_group
    )
    accelerator = make_accelerator(config, log_with, run_dir)
    run_dir = runs.open_run_dir(config, accelerator.is_main_process, accelerator.wait_for_everyone)
    setup = build_setup(config)
    model, data = setup.model, setup.data
    if t.channels_last:
        model = model.to(memory_format=torch.channels_last)
    train_tf, eval_tf = build_transforms(config.data, setup.data_config)
    workers = config.data.num_workers
    train_loader = make_loader(
        data, "train", train_tf, t.per_device_train_batch_size, True, workers
    )
    val_loader = make_loader(
        data, "validation", eval_tf, t.per_device_eval_batch_size, False, workers
    )
    if t.ema_decay and zero_stage(accelerator) == 3:
        raise RecipeError(
            "ema_decay: an EMA of ZeRO-3 sharded weights is not supported; "
            "use accelerate_configs/deepspeed_zero2.yaml or drop ema_decay"
        )
    ema = ModelEmaV3(model.to(accelerator.device), t.ema_decay) if t.ema_decay else None
    optimizer = build_optimizer(
        model,
        t.optimizer,
        t.learning_rate,
        t.weight_decay,
        t.momentum,
        config.model.backbone_lr_scale,
    )
    model, optimizer, train_loader, val_loader = accelerator.prepare(
        model, optimizer, train_loader, val_loader
    )
    plan = planned_steps(config, len(train_loader), accelerator)
    set_peak_lr(optimizer, t.learning_rate, plan["lr"])
    kwargs = epochs_to_steps(t.scheduler_kwargs, plan["per_epoch"])
    scheduler = build_scheduler(t.lr_scheduler, optimizer, plan["total"], plan["warmup"], **kwargs)
    accelerator.register_for_checkpointing(scheduler, *([ema] if ema else []))
    state = {"epoch": 0, "step": 0, "batch_in_epoch": 0, "best_accuracy": -1.0, "best_epoch": -1}
    resume = runs.find_resume_checkpoint(run_dir, t.resume_from_checkpoint)
    if resume:
        accelerator.load_state(str(resume))
        state = runs.read_state(resume)
        if accelerator.is_main_process:
            runs.truncate_history(run_dir, state["step"])
    accelerator.init_trackers(t.project, config=config.to_dict(), init_kwargs=init_kwargs)
    accelerator.print(
        f"run {run_dir}: {data.num_classes} classes, {plan['total']} updates, global batch "
        f"{plan['global_batch']}, lr {plan['lr']:.3g}, {accelerator.num_processes} process(es)"
        + (f", resumed at step {state['step']}" if resume else "")
        + (f"; {tracker_note}" if tracker_note else "")
    )
    snapshots = snapshot_steps(config, plan["total"], plan["warmup"])
    unwrapped = accelerator.unwrap_model(model)
    main = accelerator.is_main_process
    bar = tqdm(
        total=plan["total"], initial=state["step"], disable=not accelerator.is_local_main_process
    )
    start, stopped = time.perf_counter(), False
    for epoch in range(state["epoch"], t.num_epochs):
        train_mode(model)
        train_loader.set_epoch(epoch)
        skip = state["batch_in_epoch"]
        loader = skip_first_batches(train_loader, skip) if skip else train_loader
        sums = torch.zeros(3, device=accelerator.device)  # loss x n, correct, n since the last log
        epoch_sums = torch.zeros(3, device=accelerator.device)
        for images, labels in loader:
            state["batch_in_epoch"] += 1
            batch = update(accelerator, model, optimizer, images, labels, t)
            sums += batch
            epoch_sums += batch
            if not accelerator.sync_gradients:
                continue
            scheduler.step()
            state["step"] += 1
            bar.update(1)
            if ema is not None:
                ema.update(unwrapped, step=state["step"])
            if state["step"] % t.logging_steps == 0:
                position = epoch + state["batch_in_epoch"] / len(train_loader)
                loss = log_step(accelerator, sums, scheduler, state, position, run_dir)
                bar.set_postfix(loss=f"{loss:.4f}")
                sums.zero_()
            if state["step"] in snapshots:
                snapshot = run_dir / "snapshots" / f"step_{state['step']}"
                save_main(accelerator, unwrapped, snapshot, setup)
            if t.save_steps and state["step"] % t.save_steps == 0:
                save_checkpoint(accelerator, run_dir, {**state, "epoch": epoch}, t.save_total_limit)
        metrics = epoch_metrics(accelerator, model, val_loader, epoch_sums, ema, t.channels_last)
        check_finite(metrics["train_loss"], state["step"], run_dir)
        state.update(epoch=epoch + 1, batch_in_epoch=0)
        record = {
            "epoch": epoch + 1,
            "step": state["step"],
            "lr": scheduler.get_last_lr()[0],
            **metrics,
        }
        accelerator.log(record, step=state["step"])
        if metrics["val_accuracy"] > state["best_accuracy"]:
            state.update(best_accuracy=metrics["val_accuracy"], best_epoch=epoch + 1)
            save_main(accelerator, unwrapped, run_dir / "best_model", setup)
        if main:
            runs.append_jsonl(
                run_dir / runs.EPOCHS_FILE, {**record, "seconds": time.perf_counter() - start}
            )
        save_checkpoint(accelerator, run_dir, state, t.save_total_limit)
        stopped = stop_requested(accelerator, epoch_hook, epoch + 1, record)
        if stopped:
            break
    bar.close()
    return finish(accelerator, config, setup, unwrapped, ema, run_dir, state, stopped)


def set_peak_lr(optimizer, base_lr: float, peak_lr: float) -> None:
    """Apply batch-size scaling to every parameter group, keeping their LR ratios."""
    for group in optimizer.param_groups:
        group["lr"] = group["lr"] * peak_lr / base_lr

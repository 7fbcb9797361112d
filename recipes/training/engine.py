"""The one Accelerate training loop that every data-parallel recipe runs."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import Accelerator, skip_first_batches
from accelerate.utils import set_seed
from timm.utils import ModelEmaV3
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from recipes.core import runs
from recipes.core.config import RecipeConfig
from recipes.core.data import build_transforms, make_loader
from recipes.core.errors import Interrupted, RecipeError
from recipes.core.models import save_model, train_mode
from recipes.core.tracking import tracker_setup
from recipes.schedules import (
    StepPlan,
    Warp,
    advance,
    build_optimizer,
    build_scheduler,
    plan_steps,
    set_peak_lr,
)
from recipes.training.accelerator import make_accelerator, whole_weights, zero_stage
from recipes.training.deadline import keep_time
from recipes.training.setup import Setup, build_setup
from recipes.training.step import (
    EpochHook,
    check_finite,
    epoch_metrics,
    evaluate,
    log_step,
    replica_spread,
    run_line,
    save_checkpoint,
    stop_requested,
    update,
)


@dataclass
class Loop:
    """What the epoch loop works on, built once by `prepare`."""

    config: RecipeConfig
    accelerator: Accelerator
    setup: Setup
    model: torch.nn.Module  # prepared (wrapped) for training
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    ema: ModelEmaV3 | None
    train_loader: DataLoader
    val_loader: DataLoader
    plan: StepPlan
    warp: Warp  # the run's update -> the schedule's, moved by max_seconds
    run_dir: Path
    state: dict
    train_eval_loader: DataLoader | None = None  # training images, unaugmented
    said_end: int = 0  # the last update max_seconds last printed as the run's end

    @property
    def unwrapped(self) -> torch.nn.Module:
        return self.accelerator.unwrap_model(self.model)


def snapshot_steps(config: RecipeConfig, total_steps: int, warmup_steps: int = 0) -> set[int]:
    """Last update of each cosine-with-restarts cycle (cycles follow the warmup): a snapshot."""
    if not config.training.snapshot_ensemble:
        return set()
    cycles = int(config.training.scheduler_kwargs.get("num_cycles", 1))
    span = total_steps - warmup_steps
    return {warmup_steps + -(-span * (k + 1) // cycles) for k in range(cycles)}


def write_main(loop: Loop, model: torch.nn.Module, directory: Path) -> None:
    """The main process writes a model whose weights every process holds whole."""
    if loop.accelerator.is_main_process:
        save_model(model, directory, loop.setup.data.label_names, loop.setup.data_config)


def save_main(loop: Loop, model: torch.nn.Module, directory: Path) -> None:
    """Every process gathers ZeRO-3 shards, the main one writes the whole model."""
    with whole_weights(loop.accelerator, model):
        write_main(loop, model, directory)


def make_loaders(config: RecipeConfig, setup: Setup) -> tuple[DataLoader, DataLoader, DataLoader]:
    """Training (augmented), validation, and as many training images as validation ones without
    augmentation (the curve rules' training accuracy)."""
    t, workers, data = config.training, config.data.num_workers, setup.data
    train_tf, eval_tf = build_transforms(config.data, setup.data_config)
    train = make_loader(data, "train", train_tf, t.per_device_train_batch_size, True, workers)
    val = make_loader(data, "validation", eval_tf, t.per_device_eval_batch_size, False, workers)
    size = len(val.dataset)
    clean = make_loader(data, "train", eval_tf, t.per_device_eval_batch_size, False, 0, size)
    return train, val, clean


def prepare(config: RecipeConfig) -> Loop:
    """Run folder, data, model, EMA, optimizer and schedule, prepared and resumed."""
    t = config.training
    set_seed(t.seed)
    torch.set_flush_denormal(True)  # tiny Adam moments as denormals made CPU steps 10x slower
    run_dir = runs.run_dir(config)
    log_with, init_kwargs, note = tracker_setup(
        t.report_to, run_dir, runs.run_name(config), t.wandb_group
    )
    accelerator = make_accelerator(config, log_with, run_dir)
    setup = build_setup(config)
    model = setup.model.to(memory_format=torch.channels_last) if t.channels_last else setup.model
    train_loader, val_loader, train_eval_loader = make_loaders(config, setup)
    if t.ema_decay and zero_stage(accelerator) == 3:
        raise RecipeError(
            "ema_decay: an EMA of ZeRO-3 sharded weights is not supported; "
            "use accelerate_configs/deepspeed_zero2.yaml or drop ema_decay"
        )
    ema = ModelEmaV3(model.to(accelerator.device), t.ema_decay) if t.ema_decay else None
    optimizer = build_optimizer(
        model, t.optimizer, t.learning_rate, t.weight_decay, t.momentum,
        config.model.backbone_lr_scale,
    )  # fmt: skip
    model, optimizer, train_loader, val_loader, train_eval_loader = accelerator.prepare(
        model, optimizer, train_loader, val_loader, train_eval_loader
    )
    plan = plan_steps(t, len(train_loader), accelerator.num_processes)
    resume = (
        None
        if t.overwrite_output_dir
        else runs.find_resume_checkpoint(run_dir, t.resume_from_checkpoint)
    )  # before anything is written
    run_dir = runs.open_run_dir(config, accelerator.is_main_process, accelerator.wait_for_everyone)
    set_peak_lr(optimizer, t.learning_rate, plan.lr)
    scheduler = build_scheduler(
        t.lr_scheduler, optimizer, plan.total, plan.warmup, **plan.scheduler_kwargs
    )
    accelerator.register_for_checkpointing(scheduler, *([ema] if ema else []))
    loop = Loop(config, accelerator, setup, model, optimizer, scheduler, ema, train_loader,
                val_loader, plan, Warp(plan.total, plan.total), run_dir, runs.new_state(),
                train_eval_loader)  # fmt: skip
    if resume:
        accelerator.load_state(str(resume))
        loop.state = runs.read_state(resume)
        if "schedule" in loop.state:  # a time limit moved the end
            loop.warp = Warp(**loop.state["schedule"])
            loop.plan = dataclasses.replace(plan, total=loop.warp.total)
        if accelerator.is_main_process:
            runs.truncate_history(run_dir, loop.state["step"])
    accelerator.init_trackers(t.project, config=config.to_dict(), init_kwargs=init_kwargs)
    resumed_at = loop.state["step"] if resume else None
    processes = accelerator.num_processes
    line = run_line(run_dir, setup.data.num_classes, plan, processes, "", resumed_at, note)
    accelerator.print(line)
    return loop


def train_epoch(loop: Loop, epoch: int, bar: tqdm, snapshots: set[int]) -> torch.Tensor:
    """One pass over the training split, from where a resumed run stopped; the epoch's sums."""
    accelerator, t, state = loop.accelerator, loop.config.training, loop.state
    train_mode(loop.model)
    loop.train_loader.set_epoch(epoch)
    skip = state["batch_in_epoch"]
    loader = skip_first_batches(loop.train_loader, skip) if skip else loop.train_loader
    sums = torch.zeros(3, device=accelerator.device)  # loss x n, correct, n since the last log
    epoch_sums = torch.zeros(3, device=accelerator.device)
    for images, labels in loader:
        state["batch_in_epoch"] += 1
        batch = update(accelerator, loop.model, loop.optimizer, images, labels, t)
        sums += batch
        epoch_sums += batch
        if not accelerator.sync_gradients:
            continue
        advance(loop.scheduler, loop.warp(state["step"] + 1))
        state["step"] += 1
        bar.update(1)
        if loop.ema is not None:
            loop.ema.update(loop.unwrapped, step=state["step"])
        if state["step"] % t.logging_steps == 0:
            position = epoch + state["batch_in_epoch"] / len(loop.train_loader)
            lr = loop.scheduler.get_last_lr()[0]
            loss = log_step(accelerator, sums, lr, state, position, loop.run_dir)
            bar.set_postfix(loss=f"{loss:.4f}")
            sums.zero_()
        if state["step"] in snapshots:
            save_main(loop, loop.unwrapped, loop.run_dir / "snapshots" / f"step_{state['step']}")
        if t.save_steps and state["step"] % t.save_steps == 0:
            position = {**state, "epoch": epoch}
            save_checkpoint(accelerator, loop.run_dir, position, t.save_total_limit)
        if state["step"] >= loop.plan.total:  # max_steps ends the last epoch part-way
            break
    return epoch_sums


def end_epoch(
    loop: Loop,
    epoch: int,
    epoch_sums: torch.Tensor,
    seconds: float,
    train_seconds: float,
    updates: int,
) -> dict:
    """Validate, log the epoch, keep the best model, keep the time limit, checkpoint; returns
    the epoch's record (`seconds`: the run's so far, `updates`: the epoch's)."""
    accelerator, t = loop.accelerator, loop.config.training
    started = time.perf_counter()
    metrics = epoch_metrics(
        accelerator, loop.model, loop.val_loader, epoch_sums, loop.ema, t.channels_last
    )
    metrics["eval_seconds"] = time.perf_counter() - started
    check_finite(metrics["train_loss"], loop.state["step"], loop.run_dir)
    if t.max_seconds and updates:  # before the last epoch's extra pass: this one may be it
        evals = metrics["eval_seconds"]
        keep_time(loop, seconds + evals, train_seconds / updates, evals)
    lr = loop.scheduler.get_last_lr()[0]
    record = {"epoch": epoch + 1, "step": loop.state["step"], "lr": lr, **metrics}
    record["train_seconds"] = train_seconds  # the updates alone, evaluation excluded
    if epoch + 1 == loop.plan.epochs:  # the curve rules' training accuracy, unaugmented
        clean = evaluate(loop.model, loop.train_eval_loader, accelerator, t.channels_last)
        record.update(train_eval_loss=clean["loss"], train_eval_accuracy=clean["accuracy"])
    accelerator.log(record, step=loop.state["step"])
    is_main = accelerator.is_main_process
    if runs.record_epoch(loop.run_dir, loop.state, record, seconds, is_main):
        save_main(loop, loop.unwrapped, loop.run_dir / "best_model")
    loop.state["seconds"] = seconds  # a resumed run's clock goes on from here
    save_checkpoint(accelerator, loop.run_dir, loop.state, t.save_total_limit)
    return record


def finish(loop: Loop, stopped: bool) -> dict:
    """Save the last (and EMA) model and results.json, the same on every process."""
    accelerator, run_dir, setup = loop.accelerator, loop.run_dir, loop.setup
    accelerator.wait_for_everyone()
    with whole_weights(accelerator, loop.unwrapped):  # one gather for both
        spread = replica_spread(accelerator, loop.unwrapped)
        write_main(loop, loop.unwrapped, run_dir / "model")
    values = runs.results(
        run_dir, loop.state, stopped, ("step", loop.plan.total), len(setup.data.splits["train"]),
        num_processes=accelerator.num_processes, replica_spread=spread,
        **({"planned_steps": loop.warp.planned} if loop.config.training.max_seconds else {}),
    )  # fmt: skip
    if loop.ema is not None:  # never sharded: ZeRO-3 with EMA is refused
        write_main(loop, loop.ema.module, run_dir / "ema_model")
    if accelerator.is_main_process:
        runs.finish(run_dir, values)
    accelerator.end_training()
    return values


def train(config: RecipeConfig, epoch_hook: EpochHook | None = None) -> dict:
    """Train, evaluate each epoch, checkpoint, and save the model; returns results.json."""
    loop = prepare(config)
    t, accelerator = config.training, loop.accelerator
    snapshots = snapshot_steps(config, loop.plan.total, loop.plan.warmup)
    bar = tqdm(
        total=loop.plan.total,
        initial=loop.state["step"],
        disable=not accelerator.is_local_main_process,
    )
    start, stopped = time.perf_counter() - loop.state.get("seconds", 0.0), False
    try:
        while (epoch := loop.state["epoch"]) < loop.plan.epochs:
            epoch_start, first = time.perf_counter(), loop.state["step"]
            epoch_sums = train_epoch(loop, epoch, bar, snapshots)
            train_seconds = time.perf_counter() - epoch_start
            record = end_epoch(loop, epoch, epoch_sums, time.perf_counter() - start, train_seconds,
                               loop.state["step"] - first)  # fmt: skip
            bar.total = loop.plan.total
            stopped = stop_requested(accelerator, epoch_hook, epoch + 1, record)
            if stopped:
                break
    except KeyboardInterrupt:
        bar.close()
        save_checkpoint(accelerator, loop.run_dir, loop.state, t.save_total_limit)
        raise Interrupted(
            f"checkpoint saved at step {loop.state['step']} in {loop.run_dir}; "
            "run the same command again to resume from it"
        ) from None
    bar.close()
    return finish(loop, stopped)

"""Tensor (Megatron-style, intra-layer) parallelism, alone or x data replicas: a mesh of shape
(data, tensor) from torch.distributed; the same run folder, checkpoints and saved model as the
engine. Ranks of one tensor-parallel group see the same micro-batches; each replica its own."""

from __future__ import annotations

import copy
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed

from recipes.core import runs
from recipes.core.config import RecipeConfig
from recipes.core.data import DecodedImages, keep_batch
from recipes.core.errors import RecipeError
from recipes.core.models import save_model, train_mode
from recipes.core.tracking import tracker_setup
from recipes.distributed.micro_batches import global_batches, train_micro_batches
from recipes.distributed.pipeline import datasets, plan_pipeline
from recipes.distributed.tensor_plan import (
    TensorPlan,
    full_state_dict,
    local_fraction,
    make_plan,
    shard_model,
)
from recipes.distributed.tensor_sync import (
    average_gradients,
    clip_gradients,
    load_sliced,
    save_sliced,
)
from recipes.schedules import StepPlan, build_optimizer, build_scheduler, set_peak_lr
from recipes.training.accelerator import make_accelerator, world_size
from recipes.training.setup import Setup, build_setup
from recipes.training.step import EpochHook, check_finite, log_step, run_line, stop_requested


def check_tensor_config(config: RecipeConfig) -> tuple[int, int]:
    """(data replicas, tensor ranks) of the launch, refused in one line before any process group."""
    t, world = config.training, world_size()
    if "LOCAL_RANK" not in os.environ:
        raise RecipeError(
            "parallel: tensor needs a distributed launcher: torchrun --nproc_per_node N "
            "-m recipes train ... (or accelerate launch --config_file "
            "accelerate_configs/cpu_2proc.yaml -m recipes train ...)"
        )
    if world % t.tensor_parallel_size:
        raise RecipeError(
            f"{world} processes do not divide into tensor_parallel_size {t.tensor_parallel_size}; "
            "launch a multiple of it"
        )
    if t.mixed_precision == "fp16":
        raise RecipeError(
            "parallel: tensor has no fp16 loss scaling; set mixed_precision to bf16 or no"
        )
    if t.ema_decay or t.snapshot_ensemble:
        raise RecipeError(
            "ema_decay and snapshot_ensemble need the data-parallel engine; unset them"
        )
    return world // t.tensor_parallel_size, t.tensor_parallel_size


@dataclass
class TensorRun:
    """What the tensor-parallel epoch loop works on, built once by `prepare`."""

    config: RecipeConfig
    accelerator: Accelerator
    setup: Setup
    plan: TensorPlan
    mesh: object  # torch.distributed.device_mesh.DeviceMesh, dims ("dp", "tp")
    skeleton: torch.nn.Module  # the unsliced model on the meta device, filled to save
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    train_set: DecodedImages
    val_loader: torch.utils.data.DataLoader
    steps: StepPlan
    run_dir: Path
    state: dict

    @property
    def model(self) -> torch.nn.Module:
        """The model being trained, its planned layers sliced over the tp ranks."""
        return self.setup.model

    @property
    def replicas(self) -> int:
        """Data-parallel copies of the (sliced) model."""
        return self.mesh["dp"].size()


def build_mesh(accelerator: Accelerator, replicas: int, size: int):
    """The (dp, tp) device mesh over the process group Accelerate started."""
    from torch.distributed.device_mesh import init_device_mesh

    return init_device_mesh(accelerator.device.type, (replicas, size), mesh_dim_names=("dp", "tp"))


def prepare(config: RecipeConfig) -> TensorRun:
    """Checks, data, plan, process group, sliced model, optimizer, schedule, resumed position."""
    t = config.training
    replicas, size = check_tensor_config(config)
    set_seed(t.seed)
    setup = build_setup(config)
    plan = make_plan(setup.model, size)  # a model that does not split fails here, alone
    train_set, val_set = datasets(config, setup)  # decoded once, each with its transform
    steps = plan_pipeline(config, len(train_set), replicas)
    run_dir = runs.run_dir(config)
    log_with, init_kwargs, note = tracker_setup(
        t.report_to, run_dir, runs.run_name(config), t.wandb_group
    )
    accelerator = make_accelerator(config, log_with, run_dir)
    mesh = build_mesh(accelerator, replicas, size)
    skeleton = copy.deepcopy(setup.model).to("meta")
    shard_model(setup.model.to(accelerator.device), plan, mesh)
    optimizer = build_optimizer(
        setup.model, t.optimizer, t.learning_rate, t.weight_decay, t.momentum,
        config.model.backbone_lr_scale,
    )  # fmt: skip
    set_peak_lr(optimizer, t.learning_rate, steps.lr)
    scheduler = build_scheduler(
        t.lr_scheduler, optimizer, steps.total, steps.warmup, **steps.scheduler_kwargs
    )
    resume = None if t.overwrite_output_dir else runs.find_resume_checkpoint(
        run_dir, t.resume_from_checkpoint
    )  # fmt: skip
    run_dir = runs.open_run_dir(config, accelerator.is_main_process, accelerator.wait_for_everyone)
    replica = mesh.get_local_rank("dp")  # each replica validates every replicas-th image
    share = DecodedImages(val_set.images[replica::replicas], val_set.labels[replica::replicas],
                          val_set.transform)  # fmt: skip
    val_loader = torch.utils.data.DataLoader(
        share, batch_size=t.per_device_eval_batch_size, collate_fn=keep_batch
    )
    job = TensorRun(config, accelerator, setup, plan, mesh, skeleton, optimizer, scheduler,
                    train_set, val_loader, steps, run_dir, runs.new_state())  # fmt: skip
    set_seed(t.seed + replica)  # replicas augment apart, the ranks of one replica alike
    if resume:
        load_sliced(resume, setup.model, optimizer, scheduler)
        job.state = runs.read_state(resume)
        if accelerator.is_main_process:
            runs.truncate_history(run_dir, job.state["step"])
    accelerator.init_trackers(t.project, config=config.to_dict(), init_kwargs=init_kwargs)
    layout = (f"{size} tensor x {replicas} data, {local_fraction(setup.model, plan):.3f} of the "
              "split layers per rank")  # fmt: skip
    resumed_at = job.state["step"] if resume else None
    accelerator.print(run_line(run_dir, setup.data.num_classes, steps, world_size(), layout,
                               resumed_at, note))  # fmt: skip
    return job


def update(job: TensorRun, micro_batches: list) -> torch.Tensor:
    """One optimizer update over this replica's micro-batches; (loss x n, correct, n) summed."""
    t, device = job.config.training, job.accelerator.device
    sums = torch.zeros(3, device=device)
    for images, labels in micro_batches:
        images, labels = images.to(device), labels.to(device)
        with job.accelerator.autocast():
            logits = job.model(images)
        loss = torch.nn.functional.cross_entropy(
            logits.float(), labels, label_smoothing=t.label_smoothing
        )
        (loss / len(micro_batches)).backward()
        count = torch.tensor(float(len(labels)), device=device)
        hits = (logits.argmax(-1) == labels).sum()
        sums += torch.stack([loss.detach() * count, hits, count])
    average_gradients(job.model, job.mesh["dp"].get_group(), job.replicas)
    if t.max_grad_norm:
        clip_gradients(job.model, t.max_grad_norm, job.mesh["tp"].get_group())
    job.optimizer.step()
    job.optimizer.zero_grad(set_to_none=True)
    job.scheduler.step()
    return sums


def train_epoch(job: TensorRun, epoch: int) -> torch.Tensor:
    """One pass over whole global batches, from where a resumed run stopped; the epoch's sums."""
    t, state = job.config.training, job.state
    accumulation = t.gradient_accumulation_steps
    train_mode(job.model)
    batches = global_batches(len(job.train_set), job.steps.global_batch, t.seed, epoch)
    batches = batches[state["batch_in_epoch"] // accumulation :]
    replica = job.mesh.get_local_rank("dp")
    micro = train_micro_batches(
        job.train_set, batches, job.replicas, replica, t.per_device_train_batch_size
    )
    sums = torch.zeros(3, device=job.accelerator.device)
    epoch_sums = torch.zeros(3, device=job.accelerator.device)
    for _ in batches:
        batch = update(job, [next(micro) for _ in range(accumulation)])
        sums += batch
        epoch_sums += batch
        state["step"] += 1
        state["batch_in_epoch"] += accumulation
        if state["step"] % t.logging_steps == 0:
            position = epoch + state["batch_in_epoch"] / (job.steps.per_epoch * accumulation)
            lr = job.scheduler.get_last_lr()[0]
            log_step(job.accelerator, sums, lr, state, position, job.run_dir)
            sums.zero_()
        if t.save_steps and state["step"] % t.save_steps == 0:
            save_checkpoint(job, {**state, "epoch": epoch})
        if state["step"] >= job.steps.total:  # max_steps ends the last epoch part-way
            break
    return epoch_sums


def save_checkpoint(job: TensorRun, state: dict) -> None:
    """Every rank's slices and optimizer state, then the position as JSON (the engine's file)."""
    path = job.run_dir / runs.CHECKPOINTS / f"step_{state['step']}"
    save_sliced(path, job.model, job.optimizer, job.scheduler)
    job.accelerator.wait_for_everyone()
    if job.accelerator.is_main_process:
        runs.write_json(path / runs.STATE_FILE, state)
        runs.prune_checkpoints(job.run_dir, job.config.training.save_total_limit)
    job.accelerator.wait_for_everyone()


def save_whole(job: TensorRun, folder: str) -> None:
    """Gather every slice, put the qkv rows back in timm's order; the main process writes."""
    state = full_state_dict(job.model, job.plan)
    if job.accelerator.is_main_process:
        job.skeleton.load_state_dict(state, assign=True)
        data = job.setup.data
        save_model(job.skeleton, job.run_dir / folder, data.label_names, job.setup.data_config)
        job.skeleton.to("meta")
    job.accelerator.wait_for_everyone()


def epoch_metrics(job: TensorRun, epoch_sums: torch.Tensor) -> dict:
    """Training loss/accuracy of the epoch and validation, each image counted once.

    The engine's `gather_for_metrics` gathers from every process; here the ranks of a replica
    share their images, so sums are reduced over the data-parallel replicas alone.
    """
    device = job.accelerator.device
    job.model.eval()
    sums = torch.zeros(3, device=device)
    with torch.no_grad():
        for images, labels in job.val_loader:
            images, labels = images.to(device), labels.to(device)
            with job.accelerator.autocast():
                logits = job.model(images)
            loss = torch.nn.functional.cross_entropy(logits.float(), labels, reduction="sum")
            hits = (logits.argmax(-1) == labels).sum()
            sums += torch.stack([loss, hits, torch.tensor(float(len(labels)), device=device)])
    both = torch.stack([epoch_sums, sums])
    torch.distributed.all_reduce(both, group=job.mesh["dp"].get_group())
    (loss_sum, correct, count), (val_loss, val_hits, val_count) = both.tolist()
    return {
        "train_loss": loss_sum / max(count, 1.0), "train_accuracy": correct / max(count, 1.0),
        "val_loss": val_loss / max(val_count, 1.0), "val_accuracy": val_hits / max(val_count, 1.0),
        "val_samples": int(val_count),
    }  # fmt: skip


def end_epoch(
    job: TensorRun, epoch: int, epoch_sums: torch.Tensor, seconds: float, train_s: float
) -> dict:
    """Validate, log, keep the best model, checkpoint; returns the epoch's record."""
    metrics = epoch_metrics(job, epoch_sums)
    record = {"epoch": epoch + 1, "step": job.state["step"]}
    record.update(lr=job.scheduler.get_last_lr()[0], **metrics, train_seconds=train_s)
    check_finite(record["train_loss"], job.state["step"], job.run_dir)
    job.accelerator.log(record, step=job.state["step"])
    if runs.record_epoch(job.run_dir, job.state, record, seconds, job.accelerator.is_main_process):
        save_whole(job, "best_model")
    save_checkpoint(job, job.state)
    return record


def train_tensor(config: RecipeConfig, epoch_hook: EpochHook | None = None) -> dict:
    """Train with every block's layers split over tensor-parallel ranks; returns results.json."""
    job = prepare(config)
    start, stopped = time.perf_counter(), False
    for epoch in range(job.state["epoch"], job.steps.epochs):
        epoch_start = time.perf_counter()
        epoch_sums = train_epoch(job, epoch)
        train_seconds = time.perf_counter() - epoch_start
        record = end_epoch(job, epoch, epoch_sums, time.perf_counter() - start, train_seconds)
        stopped = stop_requested(job.accelerator, epoch_hook, epoch + 1, record)
        if stopped:
            break
    save_whole(job, "model")
    values = runs.results(
        job.run_dir, job.state, stopped, ("step", job.steps.total), len(job.train_set),
        num_processes=world_size(), tensor_parallel_size=job.plan.size, replicas=job.replicas,
        split_fraction=local_fraction(job.model, job.plan),
    )  # fmt: skip
    if job.accelerator.is_main_process:
        runs.finish(job.run_dir, values)
    job.accelerator.end_training()
    return values

"""DeepSpeed pipeline (model) and hybrid parallelism: stages x replicas, micro-batches."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate.utils import set_seed

from recipes.core import runs
from recipes.core.config import RecipeConfig
from recipes.core.data import DecodedImages, build_transforms
from recipes.core.errors import RecipeError
from recipes.core.models import save_model
from recipes.distributed.layers import check_pipeline_shape, pipeline_layers
from recipes.distributed.micro_batches import (
    LossMeter,
    evaluate,
    global_batches,
    train_micro_batches,
)
from recipes.schedules import StepPlan, build_optimizer, build_scheduler, plan_steps
from recipes.training.accelerator import world_size
from recipes.training.setup import Setup, build_setup
from recipes.training.step import EpochHook, ask_hook, check_finite, run_line


def import_deepspeed():
    try:
        import deepspeed
    except ImportError:
        raise RecipeError("parallel: pipeline needs DeepSpeed: pip install deepspeed") from None
    return deepspeed


def check_pipeline_config(config: RecipeConfig) -> None:
    """Refuse what the pipeline route does not do, before any process group starts."""
    if "LOCAL_RANK" not in os.environ:
        raise RecipeError(
            "parallel: pipeline needs a distributed launcher: "
            "torchrun --nproc_per_node STAGES -m recipes train ... (or deepspeed --num_gpus STAGES)"
        )
    if config.model.mode == "linear_probe" or config.model.backbone_lr_scale != 1.0:
        raise RecipeError(
            "parallel: pipeline trains every layer at one LR; use mode scratch or finetune"
        )
    if config.training.ema_decay or config.training.snapshot_ensemble:
        raise RecipeError(
            "ema_decay and snapshot_ensemble need the data-parallel engine; unset them"
        )


def gather_model(engine, model: torch.nn.Module) -> tuple[bool, float]:
    """Every stage's weights into the full timm model on rank 0; the largest replica difference."""
    names = {id(t): name for name, t in model.state_dict(keep_vars=True).items()}
    own = {
        names[id(t)]: t.detach().cpu() for t in engine.module.state_dict(keep_vars=True).values()
    }
    rank = torch.distributed.get_rank()
    parts = [None] * torch.distributed.get_world_size() if rank == 0 else None
    torch.distributed.gather_object(own, parts, dst=0)
    if rank != 0:
        return False, 0.0
    merged, difference = {}, 0.0
    for part in parts:
        for name, tensor in part.items():
            if name in merged:
                difference = max(
                    difference, (merged[name].float() - tensor.float()).abs().max().item()
                )
            merged.setdefault(name, tensor)
    model.load_state_dict(merged)
    return True, difference


def save_checkpoint(engine, run_dir, state: dict, keep: int) -> None:
    """DeepSpeed's per-stage checkpoint plus the position as JSON, like the engine's."""
    tag = f"step_{state['step']}"
    engine.save_checkpoint(str(run_dir / runs.CHECKPOINTS), tag=tag)
    if engine.global_rank == 0:
        runs.write_json(run_dir / runs.CHECKPOINTS / tag / runs.STATE_FILE, state)
        runs.prune_checkpoints(run_dir, keep)
    torch.distributed.barrier()


def build_engine(config: RecipeConfig, setup: Setup, plan: StepPlan, micro: int):
    """PipelineModule over the model's layers, timm optimizer and our schedule, in DeepSpeed."""
    from deepspeed.pipe import PipelineModule

    t = config.training
    module = PipelineModule(
        pipeline_layers(setup.model),
        num_stages=t.pipeline_stages,
        loss_fn=LossMeter(t.label_smoothing),
        partition_method=t.partition,
    )
    for param in module.parameters():  # each stage owns its weights: clip by the norm of all stages
        param.model_parallel = True
    optimizer = build_optimizer(module, t.optimizer, plan.lr, t.weight_decay, t.momentum)
    scheduler = build_scheduler(
        t.lr_scheduler, optimizer, plan.total, plan.warmup, **plan.scheduler_kwargs
    )
    ds_config = {
        "train_batch_size": plan.global_batch,
        "train_micro_batch_size_per_gpu": micro,
        "gradient_accumulation_steps": t.micro_batches * t.gradient_accumulation_steps,
        "gradient_clipping": t.max_grad_norm or 0.0,
        "bf16": {"enabled": t.mixed_precision == "bf16"},
        "fp16": {"enabled": t.mixed_precision == "fp16"},
        "steps_per_print": 10**9,
    }
    engine, _, _, scheduler = import_deepspeed().initialize(
        model=module, optimizer=optimizer, lr_scheduler=scheduler, config=ds_config
    )
    return engine, scheduler


def plan_pipeline(config: RecipeConfig, num_train: int, replicas: int) -> StepPlan:
    """The shared step plan over whole global batches: a pipeline step has a fixed shape."""
    t = config.training
    batch = t.per_device_train_batch_size * t.gradient_accumulation_steps * replicas
    if num_train < batch:
        raise RecipeError(f"global batch {batch} is larger than the {num_train} training images")
    return plan_steps(t, (num_train // batch) * t.gradient_accumulation_steps, replicas)


@dataclass
class Pipe:
    """What the pipeline's epoch loop works on, built once by `prepare`."""

    config: RecipeConfig
    setup: Setup
    engine: object  # deepspeed.runtime.pipe.engine.PipelineEngine
    scheduler: torch.optim.lr_scheduler.LRScheduler
    train_set: DecodedImages
    val_set: DecodedImages
    plan: StepPlan
    replicas: int
    micro: int
    run_dir: Path
    state: dict

    @property
    def is_main(self) -> bool:
        return self.engine.global_rank == 0


def datasets(config: RecipeConfig, setup: Setup) -> tuple[DecodedImages, DecodedImages]:
    """The decoded training and validation splits, each with its batch transform."""
    train_tf, eval_tf = build_transforms(config.data, setup.data_config)
    return tuple(
        DecodedImages(*setup.data.decoded(split, tf.size), tf)
        for split, tf in (("train", train_tf), ("validation", eval_tf))
    )


def prepare(config: RecipeConfig) -> Pipe:
    """Process group, stages, plan, DeepSpeed engine and the resumed position."""
    t = config.training
    check_pipeline_config(config)
    set_seed(t.seed)
    setup = build_setup(config)
    layers = len(pipeline_layers(setup.model))
    replicas = check_pipeline_shape(
        world_size(), t.pipeline_stages, layers, t.per_device_train_batch_size, t.micro_batches
    )
    train_set, val_set = datasets(config, setup)
    plan = plan_pipeline(config, len(train_set), replicas)
    micro = t.per_device_train_batch_size // t.micro_batches
    import_deepspeed().init_distributed(
        dist_backend="nccl" if torch.cuda.is_available() else "gloo"
    )
    rank = torch.distributed.get_rank()
    run_dir = runs.open_run_dir(config, rank == 0, torch.distributed.barrier)
    engine, scheduler = build_engine(config, setup, plan, micro)
    pipe = Pipe(config, setup, engine, scheduler, train_set, val_set, plan, replicas, micro,
                run_dir, runs.new_state())  # fmt: skip
    resume = runs.find_resume_checkpoint(run_dir, t.resume_from_checkpoint)
    if resume:
        engine.load_checkpoint(str(resume.parent), tag=resume.name)
        pipe.state = runs.read_state(resume)
        if rank == 0:
            runs.truncate_history(run_dir, pipe.state["step"])
    if rank == 0:
        stages, m = t.pipeline_stages, t.micro_batches
        layout = (f"{stages} stages x {replicas} replicas, {m} micro-batches of {micro} "
                  f"(bubble {stages - 1}/{m + stages - 1})")  # fmt: skip
        resumed_at = pipe.state["step"] if resume else None
        print(run_line(run_dir, setup.data.num_classes, plan, world_size(), layout, resumed_at))
    return pipe


def train_epoch(pipe: Pipe, epoch: int) -> None:
    """One pass: every update is one `train_batch` over this replica's micro-batches."""
    t, state = pipe.config.training, pipe.state
    batches = global_batches(len(pipe.train_set), pipe.plan.global_batch, t.seed, epoch)
    replica = pipe.engine.grid.get_data_parallel_rank()
    micro_batches = train_micro_batches(pipe.train_set, batches, pipe.replicas, replica, pipe.micro)
    window = []
    for index in range(pipe.plan.per_epoch):
        window.append(pipe.engine.train_batch(micro_batches).item())
        state["step"] += 1
        if state["step"] % t.logging_steps == 0:
            loss = sum(window) / len(window)
            check_finite(loss, state["step"], pipe.run_dir)
            record = {"step": state["step"], "epoch": epoch + (index + 1) / pipe.plan.per_epoch}
            record.update(lr=pipe.scheduler.get_last_lr()[0], loss=loss)
            if pipe.is_main:
                runs.append_jsonl(pipe.run_dir / runs.STEPS_FILE, record)
            window = []
        if state["step"] >= pipe.plan.total:  # max_steps ends the last epoch part-way
            break


def end_epoch(pipe: Pipe, epoch: int, seconds: float) -> dict:
    """Validate through the pipeline, log, keep the best model, checkpoint."""
    train = pipe.engine.module.loss_fn.totals(pipe.engine.device)
    val = evaluate(pipe.engine, pipe.val_set, pipe.micro, pipe.replicas)
    check_finite(train["loss"], pipe.state["step"], pipe.run_dir)
    record = {"epoch": epoch + 1, "step": pipe.state["step"], "lr": pipe.scheduler.get_last_lr()[0]}
    record.update(train_loss=train["loss"], train_accuracy=train["accuracy"])
    record.update(val_loss=val["loss"], val_accuracy=val["accuracy"])
    if runs.record_epoch(pipe.run_dir, pipe.state, record, seconds, pipe.is_main):
        save_gathered(pipe, "best_model")
    save_checkpoint(pipe.engine, pipe.run_dir, pipe.state, pipe.config.training.save_total_limit)
    return record


def save_gathered(pipe: Pipe, folder: str) -> float:
    """The whole model from every stage, written by rank 0; the largest replica difference."""
    is_main, difference = gather_model(pipe.engine, pipe.setup.model)
    if is_main:
        data = pipe.setup.data
        save_model(
            pipe.setup.model, pipe.run_dir / folder, data.label_names, pipe.setup.data_config
        )
    return difference


def shared_stop(hook: EpochHook | None, epoch: int, record: dict, is_main: bool) -> bool:
    """The hook's answer on rank 0, broadcast so that every stage stops together."""
    if hook is None:
        return False
    flag = torch.tensor([ask_hook(hook, epoch, record, is_main)])
    torch.distributed.broadcast(flag, src=0)
    return bool(flag.item())


def train_pipeline(config: RecipeConfig, epoch_hook: EpochHook | None = None) -> dict:
    """Train with the model split into pipeline stages; the same run folder as the engine."""
    pipe = prepare(config)
    start, stopped = time.perf_counter(), False
    for epoch in range(pipe.state["epoch"], pipe.plan.epochs):
        train_epoch(pipe, epoch)
        record = end_epoch(pipe, epoch, time.perf_counter() - start)
        stopped = shared_stop(epoch_hook, epoch + 1, record, pipe.is_main)
        if stopped:
            break
    difference = save_gathered(pipe, "model")
    t = config.training
    values = runs.results(
        pipe.run_dir, pipe.state, stopped, ("step", pipe.plan.total), len(pipe.train_set),
        num_processes=world_size(), replica_spread=difference,
        pipeline_stages=t.pipeline_stages, replicas=pipe.replicas, micro_batches=t.micro_batches,
    )  # fmt: skip
    if pipe.is_main:
        runs.finish(pipe.run_dir, values)
    torch.distributed.barrier()
    return values

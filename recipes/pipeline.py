"""DeepSpeed pipeline (model) and hybrid parallelism: stages x replicas, micro-batches."""

from __future__ import annotations

import math
import os
import time

import torch
from accelerate.data_loader import SeedableRandomSampler
from accelerate.utils import set_seed
from torch.utils.data import default_collate

from recipes import runs
from recipes.config import RecipeConfig
from recipes.curves import plot_curves
from recipes.data import TransformedImages, build_transforms
from recipes.engine import check_finite
from recipes.errors import RecipeError
from recipes.models import save_model
from recipes.parallel import check_pipeline_shape, pipeline_layers, world_size
from recipes.run_setup import Setup, build_setup
from recipes.schedules import build_optimizer, build_scheduler, epochs_to_steps, scale_learning_rate

IGNORE = -100  # label of the padding that completes the last evaluation micro-batch


class LossMeter:
    """Cross-entropy for the last stage that also counts loss, correct answers and images."""

    def __init__(self, label_smoothing: float = 0.0):
        self.label_smoothing = label_smoothing
        self.sums = torch.zeros(3)

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        valid = labels != IGNORE
        count = valid.sum()
        total = torch.nn.functional.cross_entropy(
            logits.float(),
            labels,
            ignore_index=IGNORE,
            label_smoothing=self.label_smoothing,
            reduction="sum",
        )
        loss = total / count.clamp(min=1)
        hits = ((logits.argmax(-1) == labels) & valid).sum()
        self.sums += torch.stack([total.detach(), hits, count]).float().cpu()
        return loss

    def totals(self, device) -> dict:
        """Mean loss and accuracy over every process (only last stages counted anything)."""
        sums = self.sums.to(device)
        torch.distributed.all_reduce(sums)
        loss_sum, hits, count = sums.tolist()
        self.sums.zero_()
        return {"loss": loss_sum / max(count, 1.0), "accuracy": hits / max(count, 1.0)}


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


def global_batches(n: int, batch: int, seed: int, epoch: int) -> list[list[int]]:
    """The engine's shuffled order (Accelerate's seedable sampler) cut into full global batches."""
    sampler = SeedableRandomSampler(range(n), data_seed=seed)
    sampler.set_epoch(epoch)
    order = list(sampler)
    return [order[i : i + batch] for i in range(0, n - batch + 1, batch)]


def train_micro_batches(dataset, batches, replicas: int, replica: int, micro: int):
    """This replica's share of each global batch, as consecutive micro-batches."""
    for batch in batches:
        share = len(batch) // replicas
        mine = batch[replica * share : (replica + 1) * share]
        for i in range(0, share, micro):
            yield default_collate(dataset.__getitems__(mine[i : i + micro]))


def eval_micro_batches(dataset, micro: int, replicas: int, replica: int):
    """Every image once across replicas; the last micro-batches are padded with ignored labels."""
    n, per = len(dataset), micro * replicas
    for start in range(replica * micro, math.ceil(n / per) * per, per):
        positions = torch.arange(start, start + micro)
        images, labels = default_collate(dataset.__getitems__([int(i) % n for i in positions]))
        labels[positions >= n] = IGNORE
        yield images, labels


def evaluate(engine, dataset, micro: int, replicas: int) -> dict:
    """Validation loss and accuracy through the pipeline's inference schedule."""
    meter, train_meter = LossMeter(), engine.module.loss_fn
    engine.module.loss_fn = meter
    replica = engine.grid.get_data_parallel_rank()
    count = math.ceil(len(dataset) / (micro * replicas))
    engine.eval_batch(
        eval_micro_batches(dataset, micro, replicas, replica), num_micro_batches=count
    )
    engine.module.loss_fn = train_meter
    return meter.totals(engine.device)


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


def build_engine(config: RecipeConfig, setup: Setup, plan: dict):
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
    optimizer = build_optimizer(module, t.optimizer, plan["lr"], t.weight_decay, t.momentum)
    kwargs = epochs_to_steps(t.scheduler_kwargs, plan["per_epoch"])
    scheduler = build_scheduler(t.lr_scheduler, optimizer, plan["total"], plan["warmup"], **kwargs)
    ds_config = {
        "train_batch_size": plan["global_batch"],
        "train_micro_batch_size_per_gpu": plan["micro"],
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


def plan_pipeline(config: RecipeConfig, num_train: int, replicas: int) -> dict:
    """Global batch, micro-batch size, updates per epoch, warmup and the scaled LR."""
    t = config.training
    per_replica = t.per_device_train_batch_size * t.gradient_accumulation_steps
    batch = per_replica * replicas
    per_epoch = num_train // batch
    if per_epoch == 0:
        raise RecipeError(f"global batch {batch} is larger than the {num_train} training images")
    lr = scale_learning_rate(t.learning_rate, batch, t.base_batch_size, t.scale_lr)
    return dict(
        global_batch=batch,
        micro=t.per_device_train_batch_size // t.micro_batches,
        per_epoch=per_epoch,
        total=per_epoch * t.num_epochs,
        warmup=t.warmup_steps or round(t.warmup_epochs * per_epoch),
        lr=lr,
    )


def train_pipeline(config: RecipeConfig) -> dict:
    """Train with the model split into pipeline stages; the same run folder as the engine."""
    t = config.training
    check_pipeline_config(config)
    set_seed(t.seed)
    setup = build_setup(config)
    layers = len(pipeline_layers(setup.model))
    replicas = check_pipeline_shape(
        world_size(), t.pipeline_stages, layers, t.per_device_train_batch_size, t.micro_batches
    )
    train_tf, eval_tf = build_transforms(config.data, setup.data_config)
    data = setup.data
    train_set = TransformedImages(
        data.splits["train"], train_tf, data.image_column, data.label_column
    )
    val_set = TransformedImages(
        data.splits["validation"], eval_tf, data.image_column, data.label_column
    )
    plan = plan_pipeline(config, len(train_set), replicas)
    import_deepspeed().init_distributed(
        dist_backend="nccl" if torch.cuda.is_available() else "gloo"
    )
    rank = torch.distributed.get_rank()
    run_dir = runs.open_run_dir(config, rank == 0, torch.distributed.barrier)
    engine, scheduler = build_engine(config, setup, plan)
    state = {"epoch": 0, "step": 0, "batch_in_epoch": 0, "best_accuracy": -1.0, "best_epoch": -1}
    resume = runs.find_resume_checkpoint(run_dir, t.resume_from_checkpoint)
    if resume:
        engine.load_checkpoint(str(resume.parent), tag=resume.name)
        state = runs.read_state(resume)
        if rank == 0:
            runs.truncate_history(run_dir, state["step"])
    if rank == 0:
        stages, micro = t.pipeline_stages, t.micro_batches
        print(
            f"run {run_dir}: {data.num_classes} classes, {plan['total']} updates, global batch "
            f"{plan['global_batch']}, lr {plan['lr']:.3g}, {world_size()} process(es): "
            f"{stages} stages x {replicas} replicas, {micro} micro-batches of {plan['micro']} "
            f"(bubble {stages - 1}/{micro + stages - 1})"
            + (f", resumed at step {state['step']}" if resume else "")
        )
    replica = engine.grid.get_data_parallel_rank()
    start = time.perf_counter()
    for epoch in range(state["epoch"], t.num_epochs):
        batches = global_batches(len(train_set), plan["global_batch"], t.seed, epoch)
        micro_batches = train_micro_batches(train_set, batches, replicas, replica, plan["micro"])
        window = []
        for index in range(plan["per_epoch"]):
            window.append(engine.train_batch(micro_batches).item())
            state["step"] += 1
            if state["step"] % t.logging_steps == 0:
                loss = sum(window) / len(window)
                check_finite(loss, state["step"], run_dir)
                record = {"step": state["step"], "epoch": epoch + (index + 1) / plan["per_epoch"]}
                record.update(lr=scheduler.get_last_lr()[0], loss=loss)
                if rank == 0:
                    runs.append_jsonl(run_dir / runs.STEPS_FILE, record)
                window = []
        train = engine.module.loss_fn.totals(engine.device)
        val = evaluate(engine, val_set, plan["micro"], replicas)
        check_finite(train["loss"], state["step"], run_dir)
        state.update(epoch=epoch + 1)
        record = {"epoch": epoch + 1, "step": state["step"], "lr": scheduler.get_last_lr()[0]}
        record.update(train_loss=train["loss"], train_accuracy=train["accuracy"])
        record.update(val_loss=val["loss"], val_accuracy=val["accuracy"])
        if val["accuracy"] > state["best_accuracy"]:
            state.update(best_accuracy=val["accuracy"], best_epoch=epoch + 1)
            if gather_model(engine, setup.model)[0]:
                save_model(setup.model, run_dir / "best_model", data.label_names, setup.data_config)
        if rank == 0:
            runs.append_jsonl(
                run_dir / runs.EPOCHS_FILE, {**record, "seconds": time.perf_counter() - start}
            )
        save_checkpoint(engine, run_dir, state, t.save_total_limit)
    return finish(config, engine, setup, run_dir, state, replicas)


def finish(config: RecipeConfig, engine, setup: Setup, run_dir, state: dict, replicas: int) -> dict:
    """Save the whole model from all stages, the learning curves and results.json."""
    is_main, difference = gather_model(engine, setup.model)
    history = runs.read_jsonl(run_dir / runs.EPOCHS_FILE)
    results = {
        "run_dir": str(run_dir),
        "steps": state["step"],
        "epochs": state["epoch"],
        "stopped_early": False,
        "best_val_accuracy": state["best_accuracy"],
        "best_epoch": state["best_epoch"],
        **{
            k: v
            for k, v in (history[-1] if history else {}).items()
            if k.startswith(("val_", "train_"))
        },
        "pipeline_stages": config.training.pipeline_stages,
        "replicas": replicas,
        "micro_batches": config.training.micro_batches,
        "replica_max_difference": difference,
    }
    if is_main:
        save_model(setup.model, run_dir / "model", setup.data.label_names, setup.data_config)
        if history:
            plot_curves(run_dir, run_dir / "curves.png")
        runs.write_json(run_dir / runs.RESULTS_FILE, results)
    torch.distributed.barrier()
    return results

"""The training arguments, one dataclass per concern, each checking its own values."""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass, field

from recipes.core.bounds import check_bounds
from recipes.core.errors import RecipeError
from recipes.core.precision import resolve


def check_choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise RecipeError(f"{key}: unknown value {value!r}; choose one of {', '.join(choices)}")


def _parse_json(key: str, text: str) -> dict:
    try:
        value = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError as err:
        try:  # `wandb agent` passes a nested sweep parameter as a Python dict literal
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            raise RecipeError(f"{key}: not valid JSON ({err.msg}): {text!r}") from None
    if not isinstance(value, dict):
        raise RecipeError(f"{key}: expected a JSON object, got {text!r}")
    return value


@dataclass
class DataArguments:
    """Where the images come from and how they are turned into tensors."""

    dataset: str = field(
        default="digits",
        metadata={
            "help": "'digits' (embedded), 'fashion_mnist', 'imagefolder', or a hub id ('beans')"
        },
    )
    data_dir: str | None = field(
        default=None, metadata={"help": "imagefolder: class folders; fashion_mnist: IDX files"}
    )
    image_column: str = "image"
    label_column: str = "label"
    image_size: int = field(default=32, metadata={"help": "side of the square model input"})
    augment: bool = field(default=True, metadata={"help": "random resized crop (and flip)"})
    hflip: float = field(default=0.0, metadata={"help": "horizontal flip probability"})
    crop_scale: float = field(default=0.6, metadata={"help": "smallest random-resized-crop area"})
    num_workers: int | None = field(
        default=None, metadata={"help": "loader processes (default: 0 on CPU, some with a GPU)"}
    )
    max_train_samples: int = field(
        default=0, metadata={"help": "use only N training images (0: all)"}
    )
    classes: list[str] | None = field(
        default=None, metadata={"help": "keep only these classes, relabelled in this order (5 6 7)"}
    )
    train_per_class: int | None = field(
        default=None, metadata={"help": "keep N training examples of each class (few-shot)"}
    )

    def __post_init__(self) -> None:
        check_bounds(self)


@dataclass
class ModelArguments:
    """Which timm network, where its weights come from, and what trains."""

    model_name: str = field(default="resnet10t", metadata={"help": "any timm model name"})
    pretrained: bool = field(default=False, metadata={"help": "load weights from the hub"})
    checkpoint: str | None = field(
        default=None, metadata={"help": "local weights: .safetensors/.pth file or a saved folder"}
    )
    mode: str = field(default="scratch", metadata={"help": "scratch, linear_probe or finetune"})
    backbone_lr_scale: float = field(
        default=1.0, metadata={"help": "backbone LR = learning_rate x this (finetune)"}
    )
    drop_rate: float = 0.0
    strategy: str = field(
        default="manual",
        metadata={"help": "manual (use mode) or auto (measure the data, then choose the mode)"},
    )
    freeze_stages: int = field(
        default=0, metadata={"help": "finetune: keep the stem and first K feature stages frozen"}
    )
    probe_epochs: int = field(
        default=0, metadata={"help": "finetune: first train the head alone for N epochs (LP-FT)"}
    )
    cached_features: bool = field(
        default=True,
        metadata={"help": "linear_probe: run the frozen backbone once and cache its features"},
    )
    probe_solver: str = field(
        default="auto", metadata={"help": "linear_probe: lbfgs (full batch), sgd or auto"}
    )
    feature_cache_dir: str | None = field(
        default=None, metadata={"help": "cached features (default ~/.cache/recipes/features)"}
    )

    def __post_init__(self) -> None:
        check_choice("strategy", self.strategy, ("manual", "auto"))
        check_choice("probe_solver", self.probe_solver, ("auto", "lbfgs", "sgd"))
        check_bounds(self)


@dataclass
class TrainingArguments:
    """How the one training loop runs: optimisation, schedule, precision, tracking, saving."""

    output_dir: str | None = field(
        default=None, metadata={"help": "run folder (default runs/NAME)"}
    )
    run_name: str | None = None
    overwrite_output_dir: bool = False
    resume_from_checkpoint: str | None = field(
        default="auto", metadata={"help": "'auto' (latest in the run folder), a path, or 'none'"}
    )
    seed: int = 42
    num_epochs: int = 10
    max_steps: int = field(
        default=0, metadata={"help": "updates to make, overriding num_epochs (0: off)"}
    )
    max_seconds: float = field(
        default=0.0,
        metadata={
            "help": "wall-clock limit on the epochs, in seconds (0: off): each epoch's end "
            "re-plans the updates left to the time left, the LR schedule compressed to fit"
        },
    )
    per_device_train_batch_size: int = 64
    per_device_eval_batch_size: int = 256
    gradient_accumulation_steps: int = 1
    optimizer: str = field(default="adamw", metadata={"help": "any timm optimizer name"})
    learning_rate: float = 3e-3
    weight_decay: float = 0.05
    momentum: float = 0.9
    label_smoothing: float = 0.0
    max_grad_norm: float = field(default=1.0, metadata={"help": "clip gradients (0: off)"})
    lr_scheduler: str = field(default="cosine", metadata={"help": "see `recipes schedules`"})
    scheduler_kwargs: dict | str | None = field(
        default=None, metadata={"help": 'JSON, e.g. {"milestones": [5, 8]} (epochs)'}
    )
    warmup_epochs: float = 0.0
    warmup_steps: int = 0
    scale_lr: str = field(default="none", metadata={"help": "none, linear or sqrt batch scaling"})
    base_batch_size: int = 256
    mixed_precision: str = field(
        default="no", metadata={"help": "no, bf16, fp16 or auto (bf16 where it runs natively)"}
    )
    channels_last: bool = False
    logging_steps: int = 10
    save_steps: int = field(default=0, metadata={"help": "also checkpoint every N steps (0: off)"})
    save_total_limit: int = 2
    report_to: str = field(default="wandb", metadata={"help": "none, wandb or tensorboard"})
    project: str = "training-recipes"
    wandb_group: str | None = None
    ema_decay: float = field(default=0.0, metadata={"help": "EMA of the weights (0: off)"})
    snapshot_ensemble: bool = field(
        default=False,
        metadata={"help": "save snapshots/step_N at each cycle's end (cosine_with_restarts)"},
    )
    parallel: str = field(
        default="data",
        metadata={
            "help": "data (Accelerate), pipeline (DeepSpeed stages x replicas) or tensor "
            "(layers split over ranks x replicas)"
        },
    )
    pipeline_stages: int = field(
        default=2, metadata={"help": "pipeline: stages the model is split into"}
    )
    micro_batches: int = field(
        default=4, metadata={"help": "pipeline: micro-batches per replica batch (smaller bubble)"}
    )
    tensor_parallel_size: int = field(
        default=2, metadata={"help": "tensor: ranks each block's layers are split over"}
    )
    partition: str = field(
        default="parameters",
        metadata={"help": "pipeline: balance stages by parameters or uniform layers"},
    )

    def __post_init__(self) -> None:
        if self.scheduler_kwargs in (None, "none", "None"):
            self.scheduler_kwargs = {}
        if isinstance(self.scheduler_kwargs, str):
            self.scheduler_kwargs = _parse_json("scheduler_kwargs", self.scheduler_kwargs)
        if self.resume_from_checkpoint in ("none", "None", ""):
            self.resume_from_checkpoint = None
        check_choice("scale_lr", self.scale_lr, ("none", "linear", "sqrt"))
        check_choice("mixed_precision", self.mixed_precision, ("no", "bf16", "fp16", "auto"))
        self.mixed_precision = resolve(self.mixed_precision)
        check_choice("report_to", self.report_to, ("none", "wandb", "tensorboard"))
        check_choice("parallel", self.parallel, ("data", "pipeline", "tensor"))
        check_choice("partition", self.partition, ("parameters", "uniform"))
        check_bounds(self)
        cycles = int(self.scheduler_kwargs.get("num_cycles", 1))
        if self.snapshot_ensemble and (self.lr_scheduler != "cosine_with_restarts" or cycles < 2):
            raise RecipeError(
                "snapshot_ensemble needs lr_scheduler: cosine_with_restarts and "
                "scheduler_kwargs: {num_cycles: 2 or more} (one snapshot per cycle)"
            )
        if self.snapshot_ensemble and self.max_seconds:
            raise RecipeError(
                "snapshot_ensemble with max_seconds: a time limit moves the cycles' ends; "
                "drop max_seconds, or set num_epochs to what the time affords"
            )

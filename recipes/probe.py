"""The linear probe on cached features: multinomial logistic regression, L2 chosen on validation."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate.utils import set_seed

from recipes import runs
from recipes.config import RecipeConfig
from recipes.errors import RecipeError
from recipes.features import POOLED, Features, load_features
from recipes.models import save_model
from recipes.run_setup import build_setup, make_accelerator
from recipes.tracking import tracker_setup

L2_GRID = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)
ITERS_PER_EPOCH = 10  # L-BFGS iterations in one "epoch" (each a full pass over the features)
LBFGS_MAX_VALUES = 50_000_000  # features x examples above which mini-batches are used


@dataclass
class ProbeFit:
    """One L2 strength: per-epoch records and the head (in raw feature space) after each epoch."""

    l2: float
    records: list[dict] = field(default_factory=list)
    heads: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)

    @property
    def score(self) -> tuple[float, float]:
        last = self.records[-1]
        return last["val_accuracy"], -last["val_loss"]


def objective(linear: torch.nn.Linear, x, y, l2: float) -> torch.Tensor:
    """Mean cross-entropy plus l2/2 times the squared weights (the bias is not penalised)."""
    return torch.nn.functional.cross_entropy(linear(x), y) + 0.5 * l2 * linear.weight.square().sum()


@torch.no_grad()
def loss_and_accuracy(linear: torch.nn.Linear, x, y) -> tuple[float, float]:
    logits = linear(x)
    loss = torch.nn.functional.cross_entropy(logits, y).item()
    return loss, (logits.argmax(-1) == y).float().mean().item()


def lbfgs_epochs(linear, x, y, l2: float, epochs: int) -> Iterator[int]:
    """Full-batch L-BFGS with a strong-Wolfe line search; yields the update count per epoch."""
    optimizer = torch.optim.LBFGS(
        linear.parameters(),
        lr=1.0,
        max_iter=ITERS_PER_EPOCH,
        tolerance_grad=1e-5,
        tolerance_change=1e-7,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = objective(linear, x, y, l2)
        loss.backward()
        return loss

    for _ in range(epochs):
        optimizer.step(closure)
        yield optimizer.state[linear.weight].get("n_iter", 0)


def sgd_epochs(linear, x, y, l2: float, epochs: int, lr: float, batch_size: int) -> Iterator[int]:
    """Mini-batch AdamW on the same objective, for feature sets too large for full batches."""
    optimizer = torch.optim.AdamW(linear.parameters(), lr=lr, weight_decay=0.0)
    generator = torch.Generator().manual_seed(0)
    step = 0
    for _ in range(epochs):
        for index in torch.randperm(len(x), generator=generator).split(batch_size):
            optimizer.zero_grad()
            objective(linear, x[index], y[index], l2).backward()
            optimizer.step()
            step += 1
        yield step


def fit_probe(
    train: Features,
    val: Features,
    num_classes: int,
    l2: float,
    epochs: int,
    solver: str,
    lr: float = 1e-3,
    batch_size: int = 256,
) -> ProbeFit:
    """Logistic regression on standardised features; heads are mapped back to raw features."""
    x, xv = train.layers[POOLED], val.layers[POOLED]
    mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
    x, xv = (x - mean) / std, (xv - mean) / std
    linear = torch.nn.Linear(x.shape[1], num_classes)
    torch.nn.init.zeros_(linear.weight)
    torch.nn.init.zeros_(linear.bias)
    steps = (
        lbfgs_epochs(linear, x, train.labels, l2, epochs)
        if solver == "lbfgs"
        else sgd_epochs(linear, x, train.labels, l2, epochs, lr, batch_size)
    )
    fit = ProbeFit(l2)
    for epoch, step in enumerate(steps, start=1):
        train_loss, train_accuracy = loss_and_accuracy(linear, x, train.labels)
        val_loss, val_accuracy = loss_and_accuracy(linear, xv, val.labels)
        fit.records.append(
            dict(
                epoch=epoch,
                step=step,
                lr=1.0 if solver == "lbfgs" else lr,
                train_loss=train_loss,
                train_accuracy=train_accuracy,
                val_loss=val_loss,
                val_accuracy=val_accuracy,
            )
        )
        weight = linear.weight.detach() / std
        fit.heads.append((weight.clone(), (linear.bias.detach() - weight @ mean).clone()))
    return fit


def choose_solver(solver: str, train: Features) -> str:
    """L-BFGS while the whole feature matrix is a comfortable full batch, mini-batches beyond."""
    if solver != "auto":
        return solver
    return "lbfgs" if train.layers[POOLED].numel() <= LBFGS_MAX_VALUES else "sgd"


def search_l2(
    train: Features, val: Features, num_classes: int, epochs: int, solver: str, **kwargs
) -> tuple:
    """Fit every L2 strength of the grid; keep the best on validation (accuracy, then loss)."""
    fits = [fit_probe(train, val, num_classes, l2, epochs, solver, **kwargs) for l2 in L2_GRID]
    best = max(fits, key=lambda f: f.score)
    return best, {str(f.l2): round(f.records[-1]["val_accuracy"], 4) for f in fits}


def check_linear_head(model: torch.nn.Module) -> torch.nn.Linear:
    """The trained probe goes back into the classifier, which must be one linear layer."""
    head = model.get_classifier()
    if not isinstance(head, torch.nn.Linear):
        raise RecipeError(
            f"{type(model).__name__}'s classifier is a {type(head).__name__}, not a linear layer; "
            "set cached_features: false to train it with the engine"
        )
    return head


@torch.no_grad()
def set_head(model: torch.nn.Module, weight: torch.Tensor, bias: torch.Tensor) -> None:
    head = check_linear_head(model)
    head.weight.copy_(weight.to(head.weight))
    head.bias.copy_(bias.to(head.bias))


def probe_features(config: RecipeConfig, setup, device, stages=None) -> dict[str, Features]:
    """Train and validation features of the recipe's frozen backbone, through the cache."""
    return {
        split: load_features(
            setup.model,
            config.model.model_name,
            setup.data,
            split,
            setup.data_config,
            config.data,
            stages,
            config.model.feature_cache_dir,
            device,
            config.training.mixed_precision,
            config.training.per_device_eval_batch_size,
        )
        for split in ("train", "validation")
    }


def write_probe_run(config: RecipeConfig, setup, run_dir: Path, accelerator) -> dict:
    """Features, L2 search, then model/, best_model/, epochs.jsonl, curves.png and results.json."""
    from recipes.curves import plot_curves

    start = time.perf_counter()
    check_linear_head(setup.model)
    features = probe_features(config, setup, accelerator.device)
    solver = choose_solver(config.model.probe_solver, features["train"])
    t = config.training
    fit, search = search_l2(
        features["train"],
        features["validation"],
        setup.data.num_classes,
        t.num_epochs,
        solver,
        lr=t.learning_rate,
        batch_size=t.per_device_train_batch_size,
    )
    (run_dir / runs.EPOCHS_FILE).unlink(missing_ok=True)
    for record in fit.records:
        accelerator.log(record, step=record["step"])
        runs.append_jsonl(
            run_dir / runs.EPOCHS_FILE, {**record, "seconds": time.perf_counter() - start}
        )
    best = max(range(len(fit.records)), key=lambda i: fit.records[i]["val_accuracy"])
    for folder, index in (("best_model", best), ("model", -1)):
        set_head(setup.model, *fit.heads[index])
        save_model(setup.model.cpu(), run_dir / folder, setup.data.label_names, setup.data_config)
    plot_curves(run_dir, run_dir / "curves.png")
    last = fit.records[-1]
    results = {
        "run_dir": str(run_dir),
        "steps": last["step"],
        "epochs": last["epoch"],
        "stopped_early": False,
        "best_val_accuracy": fit.records[best]["val_accuracy"],
        "best_epoch": best + 1,
        **{k: v for k, v in last.items() if k.startswith(("train_", "val_"))},
        "solver": solver,
        "l2": fit.l2,
        "l2_search": search,
        "feature_cache": {split: f.status for split, f in features.items()},
        "feature_seconds": sum(f.seconds for f in features.values()),
        "seconds": time.perf_counter() - start,
    }
    runs.write_json(run_dir / runs.RESULTS_FILE, results)
    return results


def run_linear_probe(config: RecipeConfig) -> dict:
    """`mode: linear_probe` fast path: the backbone runs once, the head trains on its features."""
    t = config.training
    set_seed(t.seed)
    log_with, init_kwargs, note = tracker_setup(
        t.report_to, runs.run_dir(config), runs.run_name(config), t.wandb_group
    )
    accelerator = make_accelerator(config, log_with, runs.run_dir(config))
    run_dir = runs.open_run_dir(config, accelerator.is_main_process, accelerator.wait_for_everyone)
    setup = build_setup(config)
    accelerator.init_trackers(t.project, config=config.to_dict(), init_kwargs=init_kwargs)
    accelerator.print(f"linear probe {run_dir}: cached features" + (f"; {note}" if note else ""))
    if accelerator.is_main_process:
        write_probe_run(config, setup, run_dir, accelerator)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return json.loads((run_dir / runs.RESULTS_FILE).read_text())

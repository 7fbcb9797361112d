"""The cached-probe route: the frozen backbone runs once, its head is fitted on the features."""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from accelerate.utils import set_seed

from recipes.core import runs
from recipes.core.config import RecipeConfig
from recipes.core.errors import RecipeError
from recipes.core.models import save_model
from recipes.core.tracking import tracker_setup
from recipes.training.accelerator import make_accelerator
from recipes.training.setup import build_setup
from recipes.training.step import EpochHook, ask_hook
from recipes.transfer.features import Features, load_features
from recipes.transfer.probe_fit import best_fit, choose_solver, fits_by_epoch, l2_scores


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


def write_probe_run(config: RecipeConfig, setup, run_dir: Path, accelerator, hook) -> dict:
    """Features, the L2 search epoch by epoch (the hook may stop it), then the run folder."""
    start = time.perf_counter()
    check_linear_head(setup.model)
    features = probe_features(config, setup, accelerator.device)
    solver = choose_solver(config.model.probe_solver, features["train"])
    t, state, stopped = config.training, runs.new_state(), False
    best_head = last_head = None
    (run_dir / runs.EPOCHS_FILE).unlink(missing_ok=True)
    epochs = fits_by_epoch(
        features["train"], features["validation"], setup.data.num_classes, t.num_epochs, solver,
        lr=t.learning_rate, batch_size=t.per_device_train_batch_size,
    )  # fmt: skip
    for fits in epochs:
        fit = best_fit(fits)
        record, last_head = fit.records[-1], fit.heads[-1]
        state["step"] = record["step"]
        accelerator.log(record, step=record["step"])
        if runs.record_epoch(run_dir, state, record, time.perf_counter() - start, True):
            best_head = last_head
        stopped = ask_hook(hook, record["epoch"], record, True) > 0
        if stopped:
            break
    for folder, head in (("best_model", best_head), ("model", last_head)):
        set_head(setup.model, *head)
        save_model(setup.model.cpu(), run_dir / folder, setup.data.label_names, setup.data_config)
    values = runs.results(
        run_dir, state, stopped, ("epoch", t.num_epochs), len(setup.data.splits["train"]),
        num_processes=accelerator.num_processes, replica_spread=0.0, solver=solver, l2=fit.l2,
        l2_search=l2_scores(fits),
        feature_cache={split: f.status for split, f in features.items()},
        feature_seconds=sum(f.seconds for f in features.values()),
    )  # fmt: skip
    return runs.finish(run_dir, values)


def run_linear_probe(config: RecipeConfig, epoch_hook: EpochHook | None = None) -> dict:
    """`mode: linear_probe` fast path: the backbone runs once, the head trains on its features."""
    t = config.training
    if t.max_steps:
        raise RecipeError(
            f"max_steps: {t.max_steps} counts updates, and the linear probe's fast path fits its "
            "head num_epochs times on cached features; set num_epochs instead"
        )
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
        write_probe_run(config, setup, run_dir, accelerator, epoch_hook)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return json.loads((run_dir / runs.RESULTS_FILE).read_text())

"""Steps 1 and 2 of the procedure (initial loss, overfit a small sample), and all three checks run
in order on any model by `run_checks`."""

from __future__ import annotations

import copy
import dataclasses
import math
from pathlib import Path

import torch
from torch.nn.functional import cross_entropy
from torch.utils.data import DataLoader, Dataset, Subset

from recipes.core.errors import RecipeError
from recipes.tuning.check_report import (
    CheckReport,
    CheckResult,
    CheckSettings,
    LossFn,
    first,
    frozen,
    make_optimizer,
    regularisation_off,
    train_step,
)
from recipes.tuning.lr_search import lr_range_test, lr_trials


def initial_loss(model, loader, num_classes: int, loss_fn: LossFn, s: CheckSettings) -> CheckResult:
    """Loss at init against ln C, which a uniform guess costs with or without label smoothing."""
    device, expected = next(model.parameters()).device, math.log(num_classes)
    regularisation_off(model)
    with torch.no_grad():
        seen = [
            (model(x.to(device)).float(), x.float(), y.to(device))
            for x, y in first(s.init_batches, loader)
        ]
    logits, images, labels = (torch.cat(part) for part in zip(*seen, strict=True))
    if logits.ndim != 2 or logits.shape[-1] != num_classes:
        raise RecipeError(
            f"the model gives outputs of shape {tuple(logits.shape)} for {num_classes} classes; "
            f"give it a head of {num_classes} outputs (timm: num_classes={num_classes})"
        )
    loss = loss_fn(logits, labels).item()
    v = {
        "loss": loss,
        "expected": expected,
        "logit_std": logits.std().item(),
        "input_mean": images.mean().item(),
        "input_std": images.std().item(),
    }
    probabilities = bool((logits >= 0).all()) and torch.allclose(
        logits.sum(-1), torch.ones(1, device=device)
    )
    close = abs(loss - expected) <= 0.25 * expected
    if probabilities:
        finding = "the model outputs probabilities (rows sum to 1): softmax is applied twice"
        action = "return logits from the model; cross-entropy applies the softmax itself"
    elif close:
        finding = f"loss at init {loss:.3f} is close to ln C = {expected:.3f}"
        action = "go on: overfit a small sample"
    elif loss < expected:
        finding = f"loss at init {loss:.3f} is below ln C = {expected:.3f}, better than a guess"
        action = "the loss misreads the logits (e.g. nll_loss on raw logits): use cross_entropy"
    elif abs(v["input_mean"]) > 5 or v["input_std"] > 5:
        stats = f"inputs have mean {v['input_mean']:.3g}, std {v['input_std']:.3g}"
        finding = f"loss at init {loss:.3f} >> ln C = {expected:.3f}; {stats}"
        action = "normalise the inputs (subtract the mean, divide by the std)"
    else:
        finding = (
            f"loss at init {loss:.3f} >> ln C = {expected:.3f}; logit std {v['logit_std']:.3g}"
        )
        action = (
            "bad initialisation: use the library's init, or scale the last layer down / zero it"
        )
    return CheckResult("initial_loss", close and not probabilities, v, finding, action)


def sample_loader(train_data, batches: int, batch_size: int) -> DataLoader:
    """The first `batches` x `batch_size` examples, read again in the same order every pass."""
    dataset = train_data.dataset if isinstance(train_data, DataLoader) else train_data
    needed = batches * batch_size
    if not hasattr(dataset, "__len__"):
        raise RecipeError("the overfit check needs a map-style Dataset (one with __len__)")
    if len(dataset) < needed:
        raise RecipeError(
            f"the training data has {len(dataset)} examples but the overfit sample needs {batches} "
            f"batches x {batch_size} = {needed}; use fewer overfit batches or a smaller batch size"
        )
    collate = train_data.collate_fn if isinstance(train_data, DataLoader) else None
    return DataLoader(Subset(dataset, range(needed)), batch_size=batch_size, collate_fn=collate)


def overfit_small_sample(
    model, sample: DataLoader, loss_fn: LossFn, s: CheckSettings
) -> CheckResult:
    """Train on a few fixed batches without regularisation until 100% accuracy and a tiny loss."""
    lr = s.lr or 1e-3
    optimizer = make_optimizer(model, s, lr, 0.0)
    if optimizer is None:
        return frozen("overfit")
    curve, labels_seen, done = {"step": [], "loss": [], "accuracy": []}, [], False
    regularisation_off(model)
    while not done and len(curve["step"]) * len(sample) < s.overfit_steps:
        passes = [(*train_step(model, optimizer, loss_fn, b), b[1]) for b in sample]
        losses, hits, labels = zip(*passes, strict=True)
        curve["step"].append((len(curve["step"]) + 1) * len(sample))
        curve["loss"].append(sum(losses) / len(losses))
        curve["accuracy"].append(sum(hits) / len(hits))
        labels_seen = labels_seen[:1] + [torch.cat(labels)]
        done = curve["accuracy"][-1] == 1.0 and curve["loss"][-1] <= s.overfit_loss
    v = {
        "steps": curve["step"][-1],
        "loss": curve["loss"][-1],
        "accuracy": curve["accuracy"][-1],
        "lr": lr,
        "labels_stable": torch.equal(labels_seen[0], labels_seen[-1]),
        "grad_fraction": gradient_fraction(model),
    }
    return CheckResult("overfit", done, v, *overfit_finding(v, curve, done), curve)


def lr_worth_a_retry(overfit: CheckResult, found_lr: float | None) -> bool:
    """A sample not memorised by a healthy set-up (labels tied to images, every tensor getting a
    gradient) may only need another LR: the one the range test found, when it found another."""
    v = overfit.values
    healthy = v.get("labels_stable") and v.get("grad_fraction") == 1.0
    return not overfit.passed and bool(healthy) and found_lr not in (None, v["lr"])


def at_found_lr(first: CheckResult, again: CheckResult) -> CheckResult:
    """The sample memorised at the range test's LR: the recipe's own LR is what was wrong."""
    was, now = first.values, again.values
    low = was["lr"] < now["lr"]
    finding = (
        f"not memorised at lr {was['lr']:.3g} (loss {was['loss']:.3g} after {was['steps']} "
        f"steps); memorised at the LR range test's {now['lr']:.3g} in {now['steps']} steps"
    )
    action = f"go on: the recipe's LR is too {'low' if low else 'high'}; search around the found LR"
    values = {**now, "recipe_lr": was["lr"], "recipe_lr_loss": was["loss"]}
    return CheckResult("overfit", True, values, finding, action, again.curve)


def gradient_fraction(model) -> float:
    """Share of trainable tensors that received a gradient: below 1, the graph is cut."""
    params = [p for p in model.parameters() if p.requires_grad]
    return sum(p.grad is not None for p in params) / max(len(params), 1)


def overfit_finding(v: dict, curve: dict, done: bool) -> tuple[str, str]:
    """Explain a sample that was or was not memorised, the most specific cause first."""
    start, end = curve["loss"][0], v["loss"]
    if done:
        return f"memorised the sample in {v['steps']} steps (loss {end:.3g})", "go on: find an LR"
    if not v["labels_stable"]:
        return (
            "the same examples came back with other labels on the next pass",
            "fix the data pipeline: labels must stay tied to their images",
        )
    if v["grad_fraction"] < 1.0:
        return (
            f"only {v['grad_fraction']:.0%} of the trainable tensors received a gradient: "
            "the graph is cut before the others",
            "remove the detach()/no_grad() in forward, or freeze those weights on purpose",
        )
    if end > 0.9 * start:
        return (
            f"loss barely moved ({start:.3g} -> {end:.3g}) in {v['steps']} steps, lr {v['lr']:.3g}",
            "the LR cannot learn or the model is broken: see the LR range test",
        )
    if v["accuracy"] == 1.0:
        return (
            f"100% accuracy, but the loss stays at {end:.3g} after {v['steps']} steps",
            "outputs look bounded (a softmax or sigmoid inside the model?): return raw logits",
        )
    return (
        f"only {v['accuracy']:.1%} accuracy, loss {end:.3g} after {v['steps']} steps",
        "train longer, raise the LR, or use a bigger model",
    )


def run_checks(
    model: torch.nn.Module,
    train_data: Dataset | DataLoader,
    num_classes: int,
    *,
    loss_fn: LossFn | None = None,
    batch_size: int = 32,
    out_dir: str | Path | None = None,
    **settings,
) -> CheckReport:
    """Initial loss, overfit a small sample, LR range test (and short LR trials) on any model.

    `train_data` is a Dataset or DataLoader of (image tensor, label) pairs without augmentation;
    the model returns logits; `settings` are `CheckSettings` fields. Weights are restored after.
    """
    unknown = set(settings) - set(CheckSettings.__dataclass_fields__)
    if unknown:
        valid = ", ".join(sorted(CheckSettings.__dataclass_fields__))
        raise RecipeError(f"unknown check setting(s) {', '.join(sorted(unknown))}; valid: {valid}")
    s = CheckSettings(**settings)
    torch.set_flush_denormal(True)  # memorising drives Adam's moments denormal: 10x slower
    loader = (
        train_data
        if isinstance(train_data, DataLoader)
        else DataLoader(train_data, batch_size, shuffle=True)
    )
    sample = sample_loader(train_data, s.overfit_batches, loader.batch_size or batch_size)
    smoothed = loss_fn or (lambda x, y: cross_entropy(x, y, label_smoothing=s.label_smoothing))
    weights, was_training = copy.deepcopy(model.state_dict()), model.training
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(s.seed)
            results = [initial_loss(model, loader, num_classes, smoothed, s)]
            plain = loss_fn or cross_entropy  # memorising: no label smoothing
            results.append(overfit_small_sample(model, sample, plain, s))
            for check in (lr_range_test, lr_trials) if s.trial_lrs else (lr_range_test,):
                model.load_state_dict(weights)
                results.append(check(model, loader, smoothed, s))
            lr = results[2].values.get("suggested_lr")  # none from a frozen model
            if lr_worth_a_retry(results[1], lr):  # at the LR the range test found
                model.load_state_dict(weights)
                again = overfit_small_sample(model, sample, plain, dataclasses.replace(s, lr=lr))
                results[1] = at_found_lr(results[1], again) if again.passed else results[1]
    finally:
        model.load_state_dict(weights)
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    report = CheckReport(results)
    if out_dir is not None:
        report.save(out_dir)
    return report

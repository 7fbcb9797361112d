"""What a check is (settings, result, report) and the training step every check shares."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from recipes.core.files import write_atomic
from recipes.core.models import train_mode
from recipes.schedules import build_optimizer

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


CHECKS_FILE = "checks.json"


@dataclass
class CheckSettings:
    """How the checks train: the recipe's optimizer and each check's budget."""

    optimizer: str = "adamw"
    lr: float | None = None  # the LR you plan to train with: judged by the sweep, used to overfit
    weight_decay: float = 1e-4  # the LR sweep's; the overfit check uses none
    momentum: float = 0.9
    label_smoothing: float = 0.0
    init_batches: int = 3
    overfit_batches: int = 5
    overfit_steps: int = 300
    overfit_loss: float = 0.05  # "memorised" means 100% accuracy and a loss below this
    sweep_steps: int = 100
    sweep_start: float = 1e-6
    sweep_end: float = 1.0
    trial_lrs: tuple[float, ...] = ()  # the lecture's variant: short runs at each of these LRs
    trial_steps: int = 100
    drop: float = 0.2  # what "drops the loss significantly" means, as a fraction
    seed: int = 0


@dataclass
class CheckResult:
    """One check: did it pass, what it measured, what it found and what to do next."""

    name: str
    passed: bool
    values: dict
    finding: str
    action: str
    curve: dict = field(default_factory=dict, repr=False)


@dataclass
class CheckReport:
    """All checks of one set-up; `passed` only when every check passed."""

    results: list[CheckResult]

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    def __getitem__(self, name: str) -> CheckResult:
        return next(r for r in self.results if r.name == name)

    @property
    def suggested_lr(self) -> float | None:
        """The LR range test's suggestion, else the short trials'."""
        found = [r.values.get("suggested_lr") for r in self.results]
        return next((lr for lr in found if lr is not None), None)

    def save(self, out_dir: str | Path) -> Path:
        """checks.json plus a PNG for each check that has a curve."""
        from recipes.core.plots import plot_check

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        checks = [asdict(r) for r in self.results]
        write_atomic(
            out / CHECKS_FILE, json.dumps({"passed": self.passed, "checks": checks}, indent=2)
        )
        for result in self.results:
            if result.curve:
                plot_check(result, out / f"{result.name}.png")
        return out / CHECKS_FILE

    def table(self) -> str:
        """Two lines per check: result, finding and next step; then the numbers."""
        lines = [f"{'check':<13}{'result':<7}finding -> next step"]
        for r in self.results:
            lines.append(
                f"{r.name:<13}{'pass' if r.passed else 'FAIL':<7}{r.finding} -> {r.action}"
            )
            numbers = (
                f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in r.values.items()
            )
            lines += [" " * 20 + ", ".join(numbers)] if r.values else []
        return "\n".join(lines)


def endless(loader: DataLoader) -> Iterator:
    """Batches forever, epoch after epoch, without caching them as itertools.cycle does."""
    while True:
        yield from loader


def first(n: int, loader: DataLoader) -> Iterator:
    return (batch for _, batch in zip(range(n), endless(loader), strict=False))


def regularisation_off(model: torch.nn.Module) -> None:
    """Training mode (frozen parts stay in eval), with dropout and drop-path off."""
    train_mode(model)
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout) or type(module).__name__ == "DropPath":
            module.eval()


def train_step(model, optimizer, loss_fn: LossFn, batch) -> tuple[float, float]:
    """One update on one batch; returns the loss and accuracy seen before the update."""
    device = next(model.parameters()).device
    images, labels = batch[0].to(device), batch[1].to(device)
    logits = model(images)
    loss = loss_fn(logits, labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.item(), (logits.argmax(-1) == labels).float().mean().item()


def make_optimizer(model, s: CheckSettings, lr: float, weight_decay: float):
    """timm's optimizer over the trainable weights; None when nothing can train."""
    if not any(p.requires_grad for p in model.parameters()):
        return None
    return build_optimizer(model, s.optimizer, lr, weight_decay, s.momentum)


def frozen(name: str) -> CheckResult:
    return CheckResult(
        name,
        False,
        {},
        "no weight requires grad: the network is frozen",
        "unfreeze the model (requires_grad=True) before training",
    )

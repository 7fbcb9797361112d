"""The linear probe's fit: multinomial logistic regression on cached features, L2 on validation."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

from recipes.transfer.features import POOLED, Features

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


def fit_epochs(
    train: Features,
    val: Features,
    num_classes: int,
    l2: float,
    epochs: int,
    solver: str,
    lr: float = 1e-3,
    batch_size: int = 256,
) -> Iterator[ProbeFit]:
    """Logistic regression on standardised features, yielding the fit after every epoch.

    Heads are mapped back to raw features, so they go into the model's classifier as they are.
    """
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
        yield fit


def fits_by_epoch(
    train: Features, val: Features, num_classes: int, epochs: int, solver: str, **kwargs
) -> Iterator[list[ProbeFit]]:
    """Every L2 strength of the grid trained side by side, yielding all of them after each epoch,
    so that a pruner can stop the search between epochs."""
    runs = [fit_epochs(train, val, num_classes, l2, epochs, solver, **kwargs) for l2 in L2_GRID]
    yield from (list(fits) for fits in zip(*runs, strict=True))


def best_fit(fits: list[ProbeFit]) -> ProbeFit:
    """The L2 strength best on validation so far (accuracy, then loss)."""
    return max(fits, key=lambda f: f.score)


def search_l2(
    train: Features, val: Features, num_classes: int, epochs: int, solver: str, **kwargs
) -> tuple[ProbeFit, dict[str, float]]:
    """Fit every L2 strength of the grid for all epochs; keep the best on validation."""
    fits = deque(fits_by_epoch(train, val, num_classes, epochs, solver, **kwargs), maxlen=1)[0]
    return best_fit(fits), l2_scores(fits)


def l2_scores(fits: list[ProbeFit]) -> dict[str, float]:
    """Each L2 strength's validation accuracy at its last epoch."""
    return {str(f.l2): round(f.records[-1]["val_accuracy"], 4) for f in fits}


def choose_solver(solver: str, train: Features) -> str:
    """L-BFGS while the whole feature matrix is a comfortable full batch, mini-batches beyond."""
    if solver != "auto":
        return solver
    return "lbfgs" if train.layers[POOLED].numel() <= LBFGS_MAX_VALUES else "sgd"

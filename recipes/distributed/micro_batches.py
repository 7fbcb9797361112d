"""What the pipeline feeds its stages: the engine's sample order cut into micro-batches, padded
evaluation batches, and a loss that also counts accuracy on the last stage."""

from __future__ import annotations

import math

import torch
from accelerate.data_loader import SeedableRandomSampler

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
            yield dataset.__getitems__(mine[i : i + micro])


def eval_micro_batches(dataset, micro: int, replicas: int, replica: int):
    """Every image once across replicas; the last micro-batches are padded with ignored labels."""
    n, per = len(dataset), micro * replicas
    for start in range(replica * micro, math.ceil(n / per) * per, per):
        positions = torch.arange(start, start + micro)
        images, labels = dataset.__getitems__([int(i) % n for i in positions])
        labels = labels.clone()
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

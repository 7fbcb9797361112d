"""Pipeline bubble: the measured idle fraction of 2 stages against GPipe's (S - 1) / (M + S - 1).

Each stage's busy time per update is M x (its forward + backward of one micro-batch, timed
alone); idle = 1 - busy / (wall time of one pipelined update).

    torchrun --nproc_per_node 2 scripts/bench_pipeline.py --micro_batches 1 4 8
"""

from __future__ import annotations

import argparse
import statistics
import time

import deepspeed
import timm
import torch
from deepspeed.pipe import PipelineModule

from recipes.distributed.layers import bubble_fraction, pipeline_layers


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vit_tiny_patch16_224", help="a timm ViT")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--micro", type=int, default=16, help="images per micro-batch")
    parser.add_argument("--micro_batches", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--steps", type=int, default=4)
    return parser.parse_args()


def stage_seconds(layers, start: int, stop: int, images: torch.Tensor, repeats: int = 5) -> float:
    """Forward + backward of this stage's layers on one micro-batch, without any communication."""
    with torch.no_grad():
        x = images
        for layer in layers[:start]:
            x = layer(x)
    times = []
    for _ in range(repeats):
        inputs = x.detach().requires_grad_(start > 0)
        begin = time.perf_counter()
        out = inputs
        for layer in layers[start:stop]:
            out = layer(out)
        out.float().sum().backward()
        times.append(time.perf_counter() - begin)
    return statistics.median(times)


def measure(layers, micro_batches: int, opts: argparse.Namespace) -> float:
    """This stage's idle fraction of a pipelined update with `micro_batches` micro-batches."""
    module = PipelineModule(
        layers, num_stages=2, loss_fn=torch.nn.CrossEntropyLoss(), partition_method="uniform"
    )
    config = {
        "train_micro_batch_size_per_gpu": opts.micro,
        "gradient_accumulation_steps": micro_batches,
        "steps_per_print": 10**9,
    }
    optimizer = torch.optim.SGD(module.parameters(), lr=1e-3)
    engine, *_ = deepspeed.initialize(model=module, optimizer=optimizer, config=config)
    batch = (torch.randn(opts.micro, 3, opts.size, opts.size), torch.randint(0, 10, (opts.micro,)))
    data = iter(lambda: batch, None)
    engine.train_batch(data)  # warm-up
    torch.distributed.barrier()
    begin = time.perf_counter()
    for _ in range(opts.steps):
        engine.train_batch(data)
    step = (time.perf_counter() - begin) / opts.steps
    stage = engine.stage_id
    busy = micro_batches * stage_seconds(
        layers, module.parts[stage], module.parts[stage + 1], batch[0]
    )
    return 1.0 - busy / step


def main() -> None:
    opts = parse_args()
    deepspeed.init_distributed(dist_backend="gloo")
    torch.manual_seed(0)
    model = timm.create_model(opts.model, img_size=opts.size, num_classes=10)
    layers = pipeline_layers(model)
    rows = []
    for m in opts.micro_batches:
        idle = torch.tensor([measure(layers, m, opts)])
        gathered = [torch.zeros(1) for _ in range(torch.distributed.get_world_size())]
        torch.distributed.all_gather(gathered, idle)
        rows.append((m, bubble_fraction(2, m), [g.item() for g in gathered]))
    if torch.distributed.get_rank() == 0:
        print(f"{opts.model} at {opts.size} px, micro-batches of {opts.micro}, 2 stages")
        print("| M | GPipe (S-1)/(M+S-1) | measured idle, stage 0 | stage 1 | mean |")
        print("|---|---|---|---|---|")
        for m, theory, idle in rows:
            print(f"| {m} | {theory:.3f} | {idle[0]:.3f} | {idle[1]:.3f} | {sum(idle) / 2:.3f} |")


if __name__ == "__main__":
    main()

"""Tensor parallelism on this machine: per-rank parameter memory, step time and all-reduces.

For 1, 2 and 4 tensor-parallel ranks on a ViT with vit_small's width (384, MLP 1536; 12 heads
of 32 rather than 6 of 64, so that 4 ranks divide them) at 32 px, random weights: the
parameters each rank holds, the median time of one training update (forward, backward,
clipping, AdamW), and the all-reduces of one forward and one backward pass counted as they run
(DTensor's collectives, by torch's CommDebugMode) against Megatron's 2 per block each way.
Runs unchanged on GPUs (NCCL, device LOCAL_RANK).

    python scripts/bench_tensor_parallel.py --ranks 1 2 4 --depth 12 --steps 5 --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import timm
import torch
import torch.distributed as dist

from recipes.distributed.tensor_plan import make_plan, shard_model
from recipes.distributed.tensor_sync import clip_gradients, local

RESULT = "RESULT "  # a worker's line of JSON on rank 0's stdout


def parse_args() -> argparse.Namespace:
    """The model's depth and input, the rank counts to compare, timed steps, threads."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--depth", type=int, default=12, help="ViT blocks")
    parser.add_argument("--heads", type=int, default=12, help="divisible by every rank count")
    parser.add_argument("--size", type=int, default=32, help="image side (patch 4)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5, help="timed updates after 2 warm-up")
    parser.add_argument("--threads", type=int, default=0, help="per rank (0: CPUs / ranks)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args()


def build(args: argparse.Namespace, ranks: int, device: torch.device):
    """The ViT, split over `ranks` tensor-parallel ranks (whole on one), and its tp group."""
    torch.manual_seed(0)
    model = timm.create_model(
        "vit_small_patch16_224", img_size=args.size, patch_size=4, depth=args.depth,
        num_heads=args.heads, num_classes=10,
    ).to(device)  # fmt: skip
    if ranks == 1:
        return model, None
    from torch.distributed.device_mesh import init_device_mesh

    mesh = init_device_mesh(device.type, (1, ranks), mesh_dim_names=("dp", "tp"))
    return shard_model(model, make_plan(model, ranks), mesh), mesh["tp"].get_group()


def count_all_reduces(model, images, labels) -> tuple[int, int]:
    """All-reduces that DTensor runs in one forward and in one backward pass."""
    from torch.distributed.tensor.debug import CommDebugMode

    def total(mode: CommDebugMode) -> int:
        """All-reduce calls that `mode` saw."""
        return sum(n for op, n in mode.get_comm_counts().items() if "all_reduce" in str(op))

    with CommDebugMode() as forward:
        loss = torch.nn.functional.cross_entropy(model(images), labels)
    with CommDebugMode() as backward:
        loss.backward()
    model.zero_grad(set_to_none=True)
    return total(forward), total(backward)


def all_reduce_ms(args: argparse.Namespace, group, device: torch.device, count: int) -> float:
    """Time of `count` all-reduces of one block's activations alone: the communication's cost."""
    tokens = (args.size // 4) ** 2 + 1
    activations = torch.randn(args.batch, tokens, 384, device=device)
    times = []
    for _ in range(3):
        sync(device)
        start = time.perf_counter()
        for _ in range(count):
            dist.all_reduce(activations, group=group)
        sync(device)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def sync(device: torch.device) -> None:
    """Wait for the GPU's queued work, so a step's time is its own."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def worker(args: argparse.Namespace, ranks: int) -> None:
    """One rank of a launch: time the updates, count the all-reduces; rank 0 prints them."""
    cuda = torch.cuda.is_available()
    device = torch.device(f"cuda:{os.environ.get('LOCAL_RANK', '0')}" if cuda else "cpu")
    if cuda:
        torch.cuda.set_device(device)
    if ranks > 1:
        dist.init_process_group("nccl" if cuda else "gloo")
    torch.set_flush_denormal(True)  # as the engine: denormal Adam moments slow CPU steps
    model, tp_group = build(args, ranks, device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    images = torch.randn(args.batch, 3, args.size, args.size, device=device)
    labels = torch.randint(0, 10, (args.batch,), device=device)
    forward, backward = count_all_reduces(model, images, labels) if ranks > 1 else (0, 0)
    times = []
    for _ in range(args.steps + 2):
        sync(device)
        start = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(images), labels)
        loss.backward()
        if tp_group is None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        else:
            clip_gradients(model, 1.0, tp_group)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync(device)
        times.append(time.perf_counter() - start)
    held = sum(local(p).numel() * p.element_size() for p in model.parameters())
    comm = all_reduce_ms(args, tp_group, device, forward + backward) if ranks > 1 else 0.0
    if int(os.environ.get("RANK", "0")) == 0:
        row = dict(ranks=ranks, step_ms=1000 * statistics.median(times[2:]), param_mb=held / 2**20)
        row.update(forward=forward, backward=backward, comm_ms=comm)
        print(RESULT + json.dumps(row), flush=True)
    if ranks > 1:
        dist.destroy_process_group()


def launch(args: argparse.Namespace, ranks: int) -> dict:
    """Run `ranks` workers under torchrun (one process for 1) and read rank 0's line."""
    flags = ["--depth", str(args.depth), "--heads", str(args.heads), "--size", str(args.size)]
    flags += ["--batch", str(args.batch)]
    flags += ["--steps", str(args.steps), "--ranks", str(ranks)]
    threads = args.threads or max(1, (os.cpu_count() or 1) // ranks)
    script = [str(Path(__file__).resolve()), "--worker", *flags]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(ranks)]
    command = [*torchrun, "--master_port", str(29500 + ranks), *script]
    output = subprocess.run(
        command if ranks > 1 else [sys.executable, *script], capture_output=True, text=True,
        env={**os.environ, "OMP_NUM_THREADS": str(threads)},
    )  # fmt: skip
    lines = [ln for ln in output.stdout.splitlines() if ln.startswith(RESULT)]
    if not lines:
        errors = [ln for ln in output.stderr.splitlines() if "Error" in ln]
        raise SystemExit(f"{ranks} ranks failed: {errors[-1] if errors else output.stderr[-2000:]}")
    return json.loads(lines[0][len(RESULT) :])


def machine() -> str:
    """The accelerator's name, or the CPU's model and flags."""
    if torch.cuda.is_available():
        return f"GPU: {torch.cuda.get_device_name(0)} x {torch.cuda.device_count()}"
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from machine import cpu_name

    return f"CPU: {cpu_name()}"


def main() -> None:
    """Launch each rank count in turn and print one table row per count."""
    args = parse_args()
    if args.worker:
        worker(args, args.ranks[0])
        return
    print(machine())
    print(f"ViT {args.depth} blocks x 384 wide, {args.heads} heads, MLP 1536, {args.size} px "
          f"(patch 4), "
          f"batch {args.batch}, median of {args.steps} AdamW updates, "
          f"{args.threads or 'CPUs / ranks'} threads per rank")  # fmt: skip
    print("| tp ranks | params per rank (MB) | step (ms) | vs 1 rank | all-reduce fwd / bwd | "
          "theory (2 per block each way) | those all-reduces alone (ms) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    base = None
    for ranks in args.ranks:
        row = launch(args, ranks)
        base = base or row
        theory = f"{2 * args.depth} / {2 * args.depth}" if ranks > 1 else "0 / 0"
        print(f"| {ranks} | {row['param_mb']:.1f} ({row['param_mb'] / base['param_mb']:.2f}x) | "
              f"{row['step_ms']:.0f} | {row['step_ms'] / base['step_ms']:.2f}x | "
              f"{row['forward']} / {row['backward']} | {theory} | "
              f"{row['comm_ms']:.0f} |")  # fmt: skip


if __name__ == "__main__":
    main()

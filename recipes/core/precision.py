"""`mixed_precision: auto`: bf16 where the hardware computes it natively, fp32 elsewhere."""

from __future__ import annotations

from pathlib import Path

import torch

BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")  # without them a CPU emulates bf16, about 5x slower


def cpu_flags() -> set[str]:
    """The CPU's feature flags (Linux); empty where /proc/cpuinfo does not list them."""
    info = Path("/proc/cpuinfo")
    text = info.read_text() if info.is_file() else ""
    line = next((ln for ln in text.splitlines() if ln.startswith(("flags", "Features"))), "")
    return set(line.partition(":")[2].split())


def native_bf16() -> bool:
    """Whether bf16 autocast pays here: a GPU with bf16 units, or a CPU with AVX-512 BF16 or AMX."""
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported(including_emulation=False)
    return bool(cpu_flags() & set(BF16_CPU_FLAGS))


def resolve(mixed_precision: str) -> str:
    """`auto` as this machine's best choice; any other value as it is."""
    if mixed_precision != "auto":
        return mixed_precision
    return "bf16" if native_bf16() else "no"

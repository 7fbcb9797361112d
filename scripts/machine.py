"""The machine a benchmark ran on, named the same way in every benchmark's output."""

from __future__ import annotations

import os
import socket
import subprocess


def cpu_name() -> str:
    """CPU model, core count and the flags that decide whether bf16 pays (AVX-512 BF16, AMX)."""
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    name = next(
        (ln.split(":", 1)[1].strip() for ln in lscpu.splitlines() if "Model name" in ln), ""
    )
    flags = sorted({f for f in ("avx2", "avx512_bf16", "amx_bf16") if f in lscpu})
    return f"{name}, {os.cpu_count()} CPUs, flags {' '.join(flags)}"


def free_port() -> str:
    """A TCP port free on this machine, for a launched run's main process."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return str(sock.getsockname()[1])

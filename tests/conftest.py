"""Tests run offline on the CPU: no hub, no wandb cloud, small timm test models."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.update(
    HF_HUB_OFFLINE="1",
    HF_DATASETS_OFFLINE="1",
    WANDB_MODE="offline",
    WANDB_SILENT="true",
    TOKENIZERS_PARALLELISM="false",
)

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
FAST = ["--report_to", "none", "--model_name", "test_convnext", "--num_epochs", "1"]


@pytest.fixture
def fast_args(tmp_path: Path) -> list[str]:
    """Command-line overrides for a one-epoch run of a tiny model into a fresh folder."""
    return [*FAST, "--output_dir", str(tmp_path / "run")]


def run_cli(*args: str, timeout: float = 300, launcher: list[str] | None = None, cwd=None):
    """`python -m recipes ...` (or under a launcher) in its own process group, killed on timeout."""
    import signal
    import subprocess

    command = [*(launcher or [PYTHON]), "-m", "recipes", *args]
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd or ROOT,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(
            f"timed out after {timeout}s: {' '.join(command)}\n{err[-3000:]}"
        ) from None
    return subprocess.CompletedProcess(command, proc.returncode, out, err)

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

"""A finished tune keeps its trials' records but not their weights: a long tune's trials would
otherwise fill the disk with resume checkpoints and models no one will load."""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

WEIGHTS = ("checkpoints", "model", "best_model")


def trial_folders(stage_folders: Iterable[Path]) -> list[Path]:
    """Every trial's run folder in these sweep stages."""
    return [t for s in stage_folders if (s / "trials").is_dir() for t in (s / "trials").iterdir()]


def prune_weights(run_folders: Iterable[Path], keep: set[Path]) -> int:
    """Remove finished runs' checkpoints, and their models unless in `keep`; bytes freed."""
    freed = 0
    for run in run_folders:
        for name in ("checkpoints",) if run.resolve() in keep else WEIGHTS:
            target = run / name
            if target.is_dir():
                freed += sum(f.stat().st_size for f in target.rglob("*") if f.is_file())
                shutil.rmtree(target)
    return freed

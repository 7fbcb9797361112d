"""Linear probe, then fine-tune (LP-FT): the new head first trains alone, so that fine-tuning
starts from a head that fits instead of a random one distorting the pretrained features."""

from __future__ import annotations

import os
import shutil

from recipes.core import runs
from recipes.core.config import RecipeConfig
from recipes.training.engine import train
from recipes.training.step import EpochHook
from recipes.transfer.probe import run_linear_probe


def probe_then_finetune(config: RecipeConfig, epoch_hook: EpochHook | None = None) -> dict:
    """The head on cached features for `probe_epochs`, then every layer from there; the hook
    sees the fine-tuning epochs."""
    run_dir = runs.run_dir(config)
    main = int(os.environ.get("RANK", "0")) == 0
    if config.training.overwrite_output_dir and run_dir.exists() and main:
        shutil.rmtree(run_dir)
    probe_dir = run_dir / "probe"
    probe = run_linear_probe(
        config.replace(
            mode="linear_probe",
            num_epochs=config.model.probe_epochs,
            output_dir=str(probe_dir),
            run_name=f"{runs.run_name(config)}-probe",
            freeze_stages=0,
            overwrite_output_dir=False,
            max_seconds=0,  # a time limit holds the fine-tuning epochs
        )
    )
    tuned = config.replace(
        checkpoint=str(probe_dir / "model"), pretrained=False, overwrite_output_dir=False
    )
    results = train(tuned, epoch_hook)
    results["probe"] = {k: probe[k] for k in ("best_val_accuracy", "l2", "solver", "feature_cache")}
    return results

"""Choosing hyperparameters: W&B sweep files run on Optuna, grid or random or Bayesian, refined."""

from recipes.search.engine import SweepOptions
from recipes.search.spec import load_sweep
from recipes.search.sweep import sweep

__all__ = ["SweepOptions", "load_sweep", "sweep"]

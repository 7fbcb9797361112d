"""The one Accelerate engine and the one route every recipe trains by."""

from recipes.training.engine import train
from recipes.training.route import ROUTES, route_of, run_recipe
from recipes.training.step import EpochHook

__all__ = ["ROUTES", "EpochHook", "route_of", "run_recipe", "train"]

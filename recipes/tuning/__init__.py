"""The lecture's seven-step procedure: checks (steps 1-3), curves (step 6), the whole of it."""

from recipes.tuning.checks import run_checks
from recipes.tuning.curves import diagnose
from recipes.tuning.inputs import check_recipe
from recipes.tuning.procedure import TuneOptions, tune

__all__ = ["TuneOptions", "check_recipe", "diagnose", "run_checks", "tune"]

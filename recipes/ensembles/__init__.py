"""Model ensembles: independent runs, snapshots, EMA, soups, and their metrics."""

from recipes.ensembles.ensemble import Ensemble, load
from recipes.ensembles.soup import soup

load_ensemble = load

__all__ = ["Ensemble", "load", "load_ensemble", "soup"]

"""Transfer learning: cached features, the linear probe, LP-FT, the strategy advisor, the study."""

from recipes.transfer.advise import Advice, advise

__all__ = ["Advice", "advise"]

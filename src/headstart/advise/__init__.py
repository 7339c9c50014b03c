"""The strategy advisor: measure dataset size and similarity to the pretraining domain, probe
each stage, and choose strategy, freeze depth, learning rates and augmentation, with reasons."""

from .advisor import (
    ADVICE_VERSION,
    MAX_IMAGES,
    Advice,
    candidates,
    decide,
    describe,
    measure,
)

__all__ = ["ADVICE_VERSION", "MAX_IMAGES", "Advice", "candidates", "decide", "describe", "measure"]

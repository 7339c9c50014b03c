"""The training loop, batch sources and feature extraction; knows only the method protocol."""

from .features import extract_features
from .loop import Batches, FitResult, autocast_for, cosine_schedule, fit, predict_logits
from .prepare import Prepare, pick_device

__all__ = [
    "Batches",
    "FitResult",
    "Prepare",
    "autocast_for",
    "cosine_schedule",
    "extract_features",
    "fit",
    "pick_device",
    "predict_logits",
]

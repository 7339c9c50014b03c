"""The training loop, batch sources and feature extraction; knows only the method protocol."""

from .batches import Batches, WithUnlabeled
from .features import cached_features, extract_features
from .loop import CHECKPOINT_FORMAT, Context, FitResult, autocast_for, fit, predict_logits
from .phases import PhasesResult, run_phases
from .prepare import Prepare, pick_device

__all__ = [
    "CHECKPOINT_FORMAT",
    "Batches",
    "Context",
    "FitResult",
    "PhasesResult",
    "Prepare",
    "WithUnlabeled",
    "autocast_for",
    "cached_features",
    "extract_features",
    "fit",
    "pick_device",
    "predict_logits",
    "run_phases",
]

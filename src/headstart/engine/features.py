"""Features of a frozen backbone, computed once per image.

When the body is frozen and sees no random augmentation its output for an image never
changes, so a linear probe or kNN trains from these cached vectors instead of running the
network every epoch.
"""

from __future__ import annotations

from typing import Callable, Iterable

import torch

from ..backbones import Backbone
from .loop import autocast_for
from .progress import EpochProgress


@torch.no_grad()
def extract_features(
    model: Backbone,
    batches: Iterable,
    *,
    prepare: Callable[[torch.Tensor], torch.Tensor],
    device: torch.device,
    description: str = "features",
    show_progress: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pooled penultimate features (float32, CPU) and labels for every batch, in order."""
    was_training = model.training
    model.eval()
    feats, labels = [], []
    with EpochProgress(description, len(batches), show_progress) as bar, autocast_for(device):  # type: ignore[arg-type]
        for x, y in batches:
            feats.append(model.forward_features(prepare(x)).float().cpu())
            labels.append(torch.as_tensor(y))
            bar.advance()
    model.train(was_training)
    return torch.cat(feats), torch.cat(labels)

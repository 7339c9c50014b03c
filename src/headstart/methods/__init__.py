"""What one training step computes. Every method returns a dict holding at least ``loss``.

The engine only calls ``method.step(model, inputs, targets)``; distillation, pseudo-labels and
self-supervised pretext tasks plug in here without the loop knowing which one it runs.
"""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import Registry


class Method(Protocol):
    def step(self, model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]: ...


METHODS: Registry[type] = Registry("method")


@METHODS.register("supervised")
class Supervised:
    """Cross-entropy on the labels, with label smoothing.

    Smoothing 0.1 keeps a head trained on a few hundred images from driving its logits to
    extremes on them, which otherwise makes its probabilities overconfident on new images.
    """

    def __init__(self, *, label_smoothing: float = 0.1) -> None:
        self.label_smoothing = label_smoothing

    def step(self, model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = model(inputs)
        loss = F.cross_entropy(logits.float(), targets, label_smoothing=self.label_smoothing)
        return {"loss": loss, "logits": logits}

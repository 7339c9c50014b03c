"""What one training step computes. Every method returns a dict holding at least ``loss``.

The engine only calls ``method.step(model, inputs, targets)``; distillation, pseudo-labels and
self-supervised pretext tasks plug in here without the loop knowing which one it runs.
"""

from __future__ import annotations

from typing import Callable, Protocol

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

    With ``mix`` (CutMix/MixUp, ``augment.BatchMix``) each training batch is mixed first and
    the loss takes the mixed labels as soft targets; the returned logits are those of the mixed
    images, so the loop's training accuracy counts agreement with each image's own label.
    """

    def __init__(self, *, label_smoothing: float = 0.1, mix: Callable | None = None) -> None:
        self.label_smoothing = label_smoothing
        self.mix = mix

    def step(self, model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        soft = targets
        if self.mix is not None and model.training:
            inputs, soft = self.mix(inputs, targets)
        logits = model(inputs)
        loss = F.cross_entropy(logits.float(), soft, label_smoothing=self.label_smoothing)
        return {"loss": loss, "logits": logits}

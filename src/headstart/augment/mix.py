"""Batch-level mixing: CutMix (paste a box of another image, labels mixed by area) and MixUp
(blend two images, labels mixed by the same weight), from ``torchvision.transforms.v2``.

Mixing runs on the prepared float batch inside the training step (it is linear in the pixels,
so mixing normalised images equals normalising mixed ones), and turns the labels into class
probabilities that the cross-entropy takes as soft targets. With both on, each batch uses one
of the two, at random.
"""

from __future__ import annotations

import torch
from torchvision.transforms import v2

from ..errors import ConfigError


class BatchMix:
    """``(images, labels) → (mixed images, soft labels)`` for a batch."""

    def __init__(self, *, num_classes: int, cutmix: float = 0.0, mixup: float = 0.0) -> None:
        if cutmix < 0 or mixup < 0:
            raise ConfigError(f"--cutmix and --mixup are Beta(α, α) parameters, 0 (off) or more; got {cutmix}, {mixup}")
        ops = []
        if cutmix > 0:
            ops.append(v2.CutMix(alpha=cutmix, num_classes=num_classes))
        if mixup > 0:
            ops.append(v2.MixUp(alpha=mixup, num_classes=num_classes))
        if not ops:
            raise ValueError("BatchMix needs cutmix or mixup above 0")
        self.op = ops[0] if len(ops) == 1 else v2.RandomChoice(ops)
        self.cutmix, self.mixup = cutmix, mixup

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.op(images, labels)

    def describe(self) -> str:
        parts = [f"CutMix α={self.cutmix:g}" if self.cutmix else "", f"MixUp α={self.mixup:g}" if self.mixup else ""]
        return " or ".join(p for p in parts if p) + (" (one of the two per batch)" if self.cutmix and self.mixup else "")


def batch_mix(*, num_classes: int, cutmix: float, mixup: float) -> BatchMix | None:
    return BatchMix(num_classes=num_classes, cutmix=cutmix, mixup=mixup) if (cutmix or mixup) else None

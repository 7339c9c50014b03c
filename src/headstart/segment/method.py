"""The segmentation task's training method, on the method seam: the loop (``engine.fit``) runs it
as it runs any classifier's method — progress, checkpoints, exact resume, ``--time-budget``,
the best epoch kept by validation — and never knows it segments.

A step is the images' logits per pixel against their masks (cross-entropy + Dice,
``losses.py``); validation sums each class's true positives, false positives and false
negatives over the validation pixels, so the epoch's mIoU is the set-level one (``metrics.py``)
and the kept epoch is the one with the best validation mIoU.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from ..methods.base import Batch, Needs, Setup, TrainingMethod
from .losses import segmentation_loss
from .masks import IGNORE
from .model import Segmenter


@dataclass(frozen=True)
class SegmentOptions:
    dice_weight: float = field(default=1.0, metadata={"help": "Weight of the Dice loss beside the cross-entropy (0: cross-entropy alone)."})


class SegmentationMethod(TrainingMethod):
    """Train a :class:`~headstart.segment.model.Segmenter` on (image, mask) batches."""

    Options = SegmentOptions
    needs = Needs(labels=True, cached_features=False)

    def __init__(self, model: Segmenter, options: Any = None, setup: Setup | None = None) -> None:
        super().__init__(model, options, setup)
        self.num_classes = model.num_classes

    def step(self, batch: Batch) -> dict[str, torch.Tensor]:
        logits = self.net(batch.images)
        out = segmentation_loss(logits, batch.labels, dice_weight=self.options.dice_weight)
        with torch.no_grad():
            valid = batch.labels != IGNORE
            out["pixel_acc"] = ((logits.argmax(1) == batch.labels) & valid).sum() / valid.sum().clamp_min(1)
        return out

    def eval_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        logits = self.eval_module()(batch.images).float()
        target = batch.labels.long()
        pred = logits.argmax(1)
        valid = target != IGNORE
        sums: dict[str, torch.Tensor] = {"loss": segmentation_loss(logits, target, dice_weight=self.options.dice_weight)["loss"] * len(target),
                                         "count": torch.tensor(len(target), device=logits.device),
                                         "pixels": valid.sum(), "correct": ((pred == target) & valid).sum()}
        for c in range(self.num_classes):
            p, t = (pred == c) & valid, (target == c) & valid
            sums[f"tp{c}"] = (p & t).sum()
            sums[f"fp{c}"] = (p & ~t).sum()
            sums[f"fn{c}"] = (~p & t).sum()
        return sums

    def score(self, sums: dict[str, float]) -> dict[str, float]:
        """Validation mIoU first (the kept epoch is the best by it), then pixel accuracy and loss."""
        ious = []
        for c in range(self.num_classes):
            union = sums[f"tp{c}"] + sums[f"fp{c}"] + sums[f"fn{c}"]
            if union > 0:
                ious.append(sums[f"tp{c}"] / union)
        miou = sum(ious) / len(ious) if ious else 0.0
        return {"val_miou": miou, "val_pixel_acc": sums["correct"] / max(1.0, sums["pixels"]), "val_loss": sums["loss"] / max(1.0, sums["count"])}

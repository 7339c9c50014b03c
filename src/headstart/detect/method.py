"""The detection task's training method and batches, on the method seam: the loop
(``engine.fit``) runs it as it runs any classifier's method — progress, checkpoints, exact
resume, ``--time-budget``, the best epoch kept by validation — and never knows it detects.

A batch holds the images and, as extras (moved to the device with the batch, split with it),
each image's boxes padded to the batch's largest count (``boxes`` (N, M, 4), ``box_labels``
(N, M), -1 for padding). A step is the detector's own losses summed (torchvision's: proposal
objectness and box regression, then classification and box refinement for Faster R-CNN;
classification, box regression and centre-ness for FCOS). Validation counts matches at IoU 0.5
(``metrics.match_counts``), which add up over batches and processes: the kept epoch is the one
with the best F1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..engine.batches import Batches
from ..methods.base import Batch, Needs, Setup, TrainingMethod
from ..segment.transforms import brightness_contrast
from .metrics import match_counts, prf
from .model import Detector


def pad_boxes(boxes: list[torch.Tensor], labels: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, M, 4) boxes and (N, M) labels, -1 where an image has fewer than M boxes (M ≥ 1)."""
    m = max(1, max((len(b) for b in boxes), default=0))
    out_b = torch.zeros(len(boxes), m, 4, dtype=torch.float32)
    out_l = torch.full((len(boxes), m), -1, dtype=torch.int64)
    for i, (b, lab) in enumerate(zip(boxes, labels)):
        out_b[i, : len(b)] = b
        out_l[i, : len(lab)] = lab
    return out_b, out_l


def unpad(batch: Batch) -> list[dict[str, torch.Tensor]]:
    """Each image's ``{"boxes", "labels"}`` from a batch's padded extras."""
    boxes, labels = batch.extras["boxes"], batch.extras["box_labels"]
    return [{"boxes": b[lab >= 0], "labels": lab[lab >= 0]} for b, lab in zip(boxes, labels)]


@dataclass(frozen=True)
class BoxAugment:
    """A random left-right flip (p = 0.5; each box mirrored with its image) and a random
    brightness/contrast change of up to ±``jitter``. No crops or rescaling: a crop that cuts an
    object leaves a box whose label may no longer be true.

    Called with a uint8 image (3, S, S) and its boxes (k, 4); returns both."""

    flip: bool = True
    jitter: float = 0.2

    def __call__(self, image: torch.Tensor, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        w = image.shape[-1]
        if self.flip and bool(torch.rand(1) < 0.5):
            image = image.flip(-1)
            boxes = torch.stack([w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0], boxes[:, 3]], dim=1) if len(boxes) else boxes
        return brightness_contrast(image, self.jitter), boxes


class BoxBatches(Batches):
    """Shuffled batches of images with their boxes (``Batches``' order, resume and sharding; the
    augmentation draws from torch's global generator, which checkpoints save)."""

    def __init__(self, images: torch.Tensor, boxes: list[torch.Tensor], labels: list[torch.Tensor], *,
                 augment: BoxAugment | None = None, **kwargs: Any) -> None:
        super().__init__(images, torch.arange(len(images)), **kwargs)
        self.boxes, self.box_labels = boxes, labels
        self.box_augment = augment

    def __iter__(self):
        for x, idx in super().__iter__():
            boxes = [self.boxes[int(i)] for i in idx]
            labels = [self.box_labels[int(i)] for i in idx]
            if self.box_augment is not None:
                pairs = [self.box_augment(img, b) for img, b in zip(x, boxes)]
                x = torch.stack([p[0] for p in pairs])
                boxes = [p[1] for p in pairs]
            pb, pl = pad_boxes(boxes, labels)
            yield Batch(images=x, extras={"boxes": pb, "box_labels": pl})


@dataclass(frozen=True)
class DetectOptions:
    """The detection method has no options of its own: the detector is chosen with ``--detector``."""


class DetectionMethod(TrainingMethod):
    """Train a :class:`~headstart.detect.model.Detector` on batches of images and boxes."""

    Options = DetectOptions
    needs = Needs(labels=True, cached_features=False)

    def __init__(self, model: Detector, options: Any = None, setup: Setup | None = None) -> None:
        super().__init__(model, options, setup)

    def step(self, batch: Batch) -> dict[str, torch.Tensor]:
        losses = self.net(batch.images, unpad(batch))
        out: dict[str, torch.Tensor] = {"loss": sum(losses.values())}
        out.update({k: v.detach() for k, v in losses.items()})
        return out

    def eval_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        dets = self.eval_module()(batch.images)
        tp = fp = fn = 0
        for d, t in zip(dets, unpad(batch)):
            a, b, c = match_counts({k: v.cpu() for k, v in d.items()}, {k: v.cpu() for k, v in t.items()})
            tp, fp, fn = tp + a, fp + b, fn + c
        dev = batch.images.device
        return {"tp": torch.tensor(tp, device=dev), "fp": torch.tensor(fp, device=dev), "fn": torch.tensor(fn, device=dev),
                "count": torch.tensor(len(dets), device=dev)}

    def score(self, sums: dict[str, float]) -> dict[str, float]:
        """Validation F1 at IoU 0.5 first (the kept epoch is the best by it), then precision and recall."""
        s = prf(sums["tp"], sums["fp"], sums["fn"])
        return {"val_f1": s["f1"], "val_precision": s["precision"], "val_recall": s["recall"]}

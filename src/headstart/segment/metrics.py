"""Segmentation metrics: per-class IoU, mIoU, pixel accuracy and the boundary F-score.

All region metrics come from one confusion matrix over the labelled pixels (``IGNORE`` pixels
left out), summed over the images first (the PASCAL VOC / Cityscapes convention: a class's IoU
is its pixels' intersection over union over the whole set, not a mean of per-image IoUs):

    IoU_c = TP_c / (TP_c + FP_c + FN_c),   mIoU = mean of IoU_c over the classes that occur
    (in the truth or the prediction; a class in neither has no IoU and is left out),
    pixel accuracy = Σ_c TP_c / labelled pixels.

The boundary F-score (Csurka et al. 2013, "What is a good evaluation measure for semantic
segmentation?"; DAVIS's F) asks whether the edges are in the right place, which IoU barely
sees for large regions: a class's boundary pixels are those of its region with a 4-neighbour
outside it; a predicted boundary pixel counts as right when a true one lies within ``tolerance``
pixels (Euclidean), and the other way round for recall; F = 2PR / (P + R) per image and class,
averaged over the (image, class) pairs where the class occurs in truth or prediction. The
tolerance is 0.75 % of the image diagonal, at least 1 pixel, as Csurka et al. propose.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy import ndimage

from .masks import IGNORE


def confusion(pred: torch.Tensor, target: torch.Tensor, num_classes: int, *, ignore_index: int = IGNORE) -> torch.Tensor:
    """(C, C) int64 counts, rows = true class, columns = predicted, over labelled pixels."""
    t = target.reshape(-1).long()
    p = pred.reshape(-1).long()
    keep = t != ignore_index
    t, p = t[keep], p[keep]
    if t.numel() and (int(t.max()) >= num_classes or int(t.min()) < 0):
        raise ValueError(f"true class indices must be in 0..{num_classes - 1} (or {ignore_index}), got {int(t.min())}..{int(t.max())}")
    return torch.bincount(t * num_classes + p, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def region_scores(cm: torch.Tensor | np.ndarray) -> dict[str, object]:
    """IoU per class (None where the class occurs nowhere), mIoU, pixel accuracy, from a
    confusion matrix."""
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    fp = cm.sum(axis=0) - tp
    fn = cm.sum(axis=1) - tp
    union = tp + fp + fn
    iou = [float(tp[c] / union[c]) if union[c] > 0 else None for c in range(len(tp))]
    occurring = [v for v in iou if v is not None]
    total = cm.sum()
    return {
        "iou": iou,
        "miou": float(np.mean(occurring)) if occurring else float("nan"),
        "pixel_accuracy": float(tp.sum() / total) if total else float("nan"),
        "pixels": int(total),
    }


def boundary(mask: np.ndarray) -> np.ndarray:
    """Boundary pixels of a boolean region: in it, with a 4-neighbour outside it (the image's
    edge does not count as outside)."""
    mask = np.asarray(mask, dtype=bool)
    inner = ndimage.binary_erosion(mask, structure=ndimage.generate_binary_structure(2, 1), border_value=1)
    return mask & ~inner


def default_tolerance(height: int, width: int) -> float:
    """0.75 % of the diagonal, at least one pixel."""
    return max(1.0, 0.0075 * math.hypot(height, width))


def boundary_f(pred: np.ndarray, target: np.ndarray, num_classes: int, *, tolerance: float | None = None,
               ignore_index: int = IGNORE) -> tuple[float, int]:
    """(sum of F over the classes occurring in this image, how many): see the module. Pixels
    ignored in the truth are left out of both boundaries."""
    pred, target = np.asarray(pred), np.asarray(target)
    valid = target != ignore_index
    tol = default_tolerance(*target.shape) if tolerance is None else float(tolerance)
    total, count = 0.0, 0
    for c in range(num_classes):
        pb = boundary((pred == c) & valid) & valid
        tb = boundary((target == c) & valid) & valid
        if not pb.any() and not tb.any():
            continue
        count += 1
        if not pb.any() or not tb.any():
            continue  # F = 0
        dist_to_t = ndimage.distance_transform_edt(~tb)
        dist_to_p = ndimage.distance_transform_edt(~pb)
        precision = float((dist_to_t[pb] <= tol).mean())
        recall = float((dist_to_p[tb] <= tol).mean())
        if precision + recall > 0:
            total += 2 * precision * recall / (precision + recall)
    return total, count


class SegScores:
    """Running sums over images: the confusion matrix and the boundary F-score."""

    def __init__(self, num_classes: int, *, boundary: bool = True) -> None:
        self.num_classes = num_classes
        self.cm = torch.zeros(num_classes, num_classes, dtype=torch.int64)
        self.boundary = boundary
        self.bf_sum = 0.0
        self.bf_count = 0
        self.per_image: list[float] = []  # each image's own mIoU, to pick the best and worst

    def add(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """A batch of predicted and true masks (N, H, W)."""
        pred, target = pred.cpu(), target.cpu()
        for p, t in zip(pred, target):
            cm = confusion(p, t, self.num_classes)
            self.cm += cm
            self.per_image.append(region_scores(cm)["miou"])
            if self.boundary:
                s, n = boundary_f(p.numpy(), t.numpy(), self.num_classes)
                self.bf_sum += s
                self.bf_count += n

    def result(self, classes: list[str] | None = None) -> dict[str, object]:
        r = region_scores(self.cm)
        names = classes or [str(i) for i in range(self.num_classes)]
        r["per_class_iou"] = {n: v for n, v in zip(names, r["iou"])}
        if self.boundary:
            r["boundary_f"] = self.bf_sum / self.bf_count if self.bf_count else float("nan")
        r["images"] = len(self.per_image)
        return r

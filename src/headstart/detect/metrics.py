"""Scoring boxes: COCO-style mAP from a well-kept implementation, and the simple counts a person
reads (matches at IoU 0.5, CorLoc).

- **mAP** is torchmetrics' ``MeanAveragePrecision`` over pycocotools (the COCO evaluation
  itself): mAP@0.5, mAP@0.75 and mAP@0.5:0.95 (IoU thresholds 0.50, 0.55, … 0.95, 101-point
  interpolated precision), and the AP of each class.
- **Matches** at IoU ≥ 0.5 among detections scoring ≥ :data:`SCORE_THRESHOLD`: each detection,
  highest score first, takes the unmatched true box of its class it overlaps most; precision,
  recall and F1 follow. They add up over images, so the loop can validate with them every epoch
  (mAP does not add up).
- **CorLoc** (Deselaers et al. 2012, the weakly supervised localization measure): the share of
  images whose single most confident box overlaps a true box by IoU ≥ 0.5. It is what a
  classifier's CAM box can be scored by too (``explain --gt``), so the two stand side by side.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

IOU_MATCH = 0.5
SCORE_THRESHOLD = 0.5
"""Detections at or above this score count as the detector's answer for precision and recall."""


def box_iou_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of every box in ``a`` (n, 4) with every box in ``b`` (m, 4), x0 y0 x1 y1."""
    from torchvision.ops import box_iou

    if len(a) == 0 or len(b) == 0:
        return torch.zeros(len(a), len(b))
    return box_iou(a.float(), b.float())


def match_counts(pred: dict[str, torch.Tensor], truth: dict[str, torch.Tensor], *, iou: float = IOU_MATCH,
                 score: float = SCORE_THRESHOLD) -> tuple[int, int, int]:
    """(true positives, false positives, false negatives) of one image's detections: greedy by
    score, each detection matched to the unmatched true box of its class it overlaps most."""
    keep = pred["scores"] >= score
    boxes, labels, scores = pred["boxes"][keep], pred["labels"][keep], pred["scores"][keep]
    order = torch.argsort(scores, descending=True)
    t_boxes, t_labels = truth["boxes"], truth["labels"]
    used = torch.zeros(len(t_boxes), dtype=torch.bool)
    ious = box_iou_matrix(boxes, t_boxes)
    tp = 0
    for j in order.tolist():
        if len(t_boxes) == 0:
            break
        cand = ious[j].clone()
        cand[(t_labels != labels[j]) | used] = -1.0
        k = int(torch.argmax(cand))
        if cand[k] >= iou:
            used[k] = True
            tp += 1
    return tp, int(len(boxes)) - tp, int(len(t_boxes)) - tp


def top_box_iou(pred: dict[str, torch.Tensor], truth: dict[str, torch.Tensor], *, same_class: bool = False) -> float:
    """The most confident detection's best IoU with a true box (of its class, with
    ``same_class``); 0 without detections or true boxes."""
    if len(pred["scores"]) == 0 or len(truth["boxes"]) == 0:
        return 0.0
    j = int(torch.argmax(pred["scores"]))
    ious = box_iou_matrix(pred["boxes"][j : j + 1], truth["boxes"])[0]
    if same_class:
        ious = torch.where(truth["labels"] == pred["labels"][j], ious, torch.zeros_like(ious))
    return float(ious.max())


def top_box_hit(pred: dict[str, torch.Tensor], truth: dict[str, torch.Tensor], *, iou: float = IOU_MATCH,
                same_class: bool = False) -> bool:
    """Whether the most confident detection overlaps a true box by ``iou`` (of the same class,
    with ``same_class``): one image's CorLoc."""
    return top_box_iou(pred, truth, same_class=same_class) >= iou


def prf(tp: float, fp: float, fn: float) -> dict[str, float]:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return {"precision": p, "recall": r, "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0}


def _as_tensors(d: dict[str, Any]) -> dict[str, torch.Tensor]:
    out = {"boxes": torch.as_tensor(np.asarray(d["boxes"], dtype=np.float32)).reshape(-1, 4),
           "labels": torch.as_tensor(np.asarray(d["labels"], dtype=np.int64)).reshape(-1)}
    if "scores" in d:
        out["scores"] = torch.as_tensor(np.asarray(d["scores"], dtype=np.float32)).reshape(-1)
    return out


def score_detections(preds: list[dict[str, Any]], truths: list[dict[str, Any]], classes: list[str]) -> dict[str, Any]:
    """Every measure above over a set of images: ``preds[i]`` boxes/scores/labels and
    ``truths[i]`` boxes/labels of image i (0-based labels, the same pixels)."""
    from torchmetrics.detection import MeanAveragePrecision

    if len(preds) != len(truths):
        raise ValueError("one prediction per image")
    p = [_as_tensors(d) for d in preds]
    t = [_as_tensors(d) for d in truths]
    metric = MeanAveragePrecision(iou_type="bbox", class_metrics=True, backend="pycocotools")
    metric.update(p, t)
    res = metric.compute()
    tp = fp = fn = 0
    for a, b in zip(p, t):
        x, y, z = match_counts(a, b)
        tp, fp, fn = tp + x, fp + y, fn + z
    with_boxes = [(a, b) for a, b in zip(p, t) if len(b["boxes"])]
    val = lambda v: None if float(v) < 0 else float(v)  # noqa: E731  (-1: no such boxes in the set)
    per_class: dict[str, float | None] = {c: None for c in classes}
    ids = res["classes"].reshape(-1).tolist()
    aps = res["map_per_class"].reshape(-1).tolist()
    for c, ap in zip(ids, aps):
        if 0 <= int(c) < len(classes):
            per_class[classes[int(c)]] = val(ap)
    return {
        "images": len(p), "boxes": int(sum(len(b["boxes"]) for b in t)),
        "map": val(res["map"]), "map_50": val(res["map_50"]), "map_75": val(res["map_75"]),
        "mar_100": val(res["mar_100"]), "per_class_ap50_95": per_class,
        "matches": {"iou": IOU_MATCH, "score": SCORE_THRESHOLD, "tp": tp, "fp": fp, "fn": fn, **prf(tp, fp, fn)},
        "corloc": float(np.mean([top_box_hit(a, b) for a, b in with_boxes])) if with_boxes else None,
        "corloc_same_class": float(np.mean([top_box_hit(a, b, same_class=True) for a, b in with_boxes])) if with_boxes else None,
        "top_box_mean_iou": float(np.mean([top_box_iou(a, b) for a, b in with_boxes])) if with_boxes else None,
    }

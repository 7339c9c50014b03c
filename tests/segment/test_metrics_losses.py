"""Segmentation metrics and losses against naive references: IoU and mIoU by a pixel loop, the
boundary F-score on hand-drawn cases, Dice by its formula written out class by class."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from headstart.segment.losses import EPS, dice_loss, segmentation_loss
from headstart.segment.masks import IGNORE
from headstart.segment.metrics import SegScores, boundary, boundary_f, confusion, default_tolerance, region_scores


def naive_iou(preds, truths, c):
    """Intersection over union of class c over every labelled pixel of every image, one pixel at a time."""
    inter = union = 0
    for p, t in zip(preds, truths):
        for pv, tv in zip(p.flatten().tolist(), t.flatten().tolist()):
            if tv == IGNORE:
                continue
            inter += pv == c and tv == c
            union += pv == c or tv == c
    return None if union == 0 else inter / union


def test_iou_miou_and_pixel_accuracy_equal_a_pixel_loop():
    rng = np.random.default_rng(0)
    preds = [rng.integers(0, 4, size=(9, 7)) for _ in range(3)]
    truths = [rng.integers(0, 3, size=(9, 7)) for _ in range(3)]  # class 3 only ever predicted, never true
    truths[1][2:4, 1:5] = IGNORE
    scores = SegScores(4, boundary=False)
    for p, t in zip(preds, truths):
        scores.add(torch.from_numpy(p)[None], torch.from_numpy(t)[None])
    r = scores.result(["a", "b", "c", "d"])
    want = [naive_iou(preds, truths, c) for c in range(4)]
    assert r["iou"] == pytest.approx(want)
    assert r["miou"] == pytest.approx(np.mean([v for v in want if v is not None]))
    labelled = sum((t != IGNORE).sum() for t in truths)
    correct = sum(((p == t) & (t != IGNORE)).sum() for p, t in zip(preds, truths))
    assert r["pixel_accuracy"] == pytest.approx(correct / labelled)
    assert r["pixels"] == labelled
    assert r["per_class_iou"]["d"] == pytest.approx(0.0)  # predicted, never true: IoU 0, in the mean


def test_a_class_absent_from_truth_and_prediction_has_no_iou():
    p = torch.tensor([[0, 0], [1, 1]])
    r = region_scores(confusion(p, p.clone(), 3))
    assert r["iou"] == [1.0, 1.0, None] and r["miou"] == 1.0


def test_confusion_refuses_true_labels_beyond_the_classes():
    with pytest.raises(ValueError, match="0..1"):
        confusion(torch.zeros(2, 2), torch.full((2, 2), 2), 2)


def test_boundary_pixels_of_a_square():
    m = np.zeros((7, 7), bool)
    m[1:6, 1:6] = True
    b = boundary(m)
    ring = m.copy()
    ring[2:5, 2:5] = False
    assert (b == ring).all()
    full = np.ones((4, 4), bool)
    assert not boundary(full).any()  # the image's edge is not a boundary


def test_boundary_f_by_hand():
    t = np.zeros((20, 20), np.uint8)
    t[5:15, 5:15] = 1
    assert boundary_f(t, t, 2, tolerance=1) == (2.0, 2)
    shifted = np.zeros_like(t)
    shifted[5:15, 8:18] = 1  # moved 3 px right: the vertical edges are 3 px off, beyond a 1-px tolerance
    s, n = boundary_f(shifted, t, 2, tolerance=1)
    assert n == 2 and 0 < s / n < 1
    s3, _ = boundary_f(shifted, t, 2, tolerance=3)
    assert s3 == pytest.approx(2.0)  # within 3 px everything matches
    # a class predicted where it is not: counted with F = 0
    other = t.copy()
    other[0, 0] = 2
    s, n = boundary_f(other, t, 3, tolerance=1)
    assert n == 3 and s < 2.0 + 1e-9
    assert default_tolerance(100, 100) == pytest.approx(max(1.0, 0.0075 * math.hypot(100, 100)))


def naive_dice_loss(logits, target, eps=EPS):
    probs = logits.softmax(1)
    n, c, h, w = logits.shape
    dices = []
    for k in range(c):
        inter = ps = gs = 0.0
        for i in range(n):
            for y in range(h):
                for x in range(w):
                    t = int(target[i, y, x])
                    if t == IGNORE:
                        continue
                    p = float(probs[i, k, y, x])
                    g = 1.0 if t == k else 0.0
                    inter += p * g
                    ps += p
                    gs += g
        if gs > 0:
            dices.append((2 * inter + eps) / (ps + gs + eps))
    return 1 - sum(dices) / len(dices)


def test_dice_equals_its_formula_written_out():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, 5, 6, generator=g)
    target = torch.randint(0, 3, (2, 5, 6), generator=g)  # class 3 absent from the truth
    target[0, 0, :3] = IGNORE
    assert float(dice_loss(logits, target)) == pytest.approx(naive_dice_loss(logits, target), rel=1e-5)


def test_the_combined_loss_ignores_pixels_and_has_a_gradient():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(1, 3, 4, 4, generator=g, requires_grad=True)
    target = torch.randint(0, 3, (1, 4, 4), generator=g)
    target[0, 0] = IGNORE
    out = segmentation_loss(logits, target, dice_weight=0.5)
    keep = target != IGNORE
    ce = F.cross_entropy(logits.detach().permute(0, 2, 3, 1)[keep], target[keep])
    assert float(out["ce"]) == pytest.approx(float(ce), rel=1e-6)
    assert float(out["loss"].detach()) == pytest.approx(float(ce) + 0.5 * naive_dice_loss(logits.detach(), target), rel=1e-5)
    out["loss"].backward()
    assert logits.grad[0, :, 0].abs().sum() == 0  # ignored pixels get no gradient
    assert logits.grad.abs().sum() > 0
    every = torch.full((1, 4, 4), IGNORE)
    assert float(segmentation_loss(logits, every)["loss"].detach()) == 0.0  # nothing labelled: no loss, no NaN

"""Box scores against naive references: COCO AP@0.5 by a hand-written 101-point loop, matches and
CorLoc counted by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from headstart.detect.metrics import match_counts, prf, score_detections, top_box_hit, top_box_iou


def _iou(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def naive_ap(preds, truths, cls, thr):
    """COCO's AP for one class at one IoU threshold: detections ranked by score over all images,
    each matched to the unmatched true box it overlaps most (≥ thr), precision made monotone,
    read at recall 0, 0.01, … 1."""
    dets = []
    for i, p in enumerate(preds):
        for b, s, lab in zip(p["boxes"], p["scores"], p["labels"]):
            if lab == cls:
                dets.append((float(s), i, list(b)))
    n_true = sum(int((np.asarray(t["labels"]) == cls).sum()) for t in truths)
    dets.sort(key=lambda d: -d[0])
    used = {i: set() for i in range(len(truths))}
    hits = []
    for s, i, b in dets:
        best, best_j = thr, -1
        for j, (tb, tl) in enumerate(zip(truths[i]["boxes"], truths[i]["labels"])):
            if tl != cls or j in used[i]:
                continue
            v = _iou(b, tb)
            if v >= best:
                best, best_j = v, j
        if best_j >= 0:
            used[i].add(best_j)
        hits.append(best_j >= 0)
    tp = np.cumsum(hits)
    fp = np.cumsum([not h for h in hits])
    recall = tp / n_true
    precision = tp / np.maximum(tp + fp, 1)
    for k in range(len(precision) - 2, -1, -1):
        precision[k] = max(precision[k], precision[k + 1])
    out = []
    for r in np.linspace(0, 1, 101):
        idx = np.searchsorted(recall, r, side="left")
        out.append(precision[idx] if idx < len(precision) else 0.0)
    return float(np.mean(out))


def random_set(seed, n_images=12, classes=2):
    rng = np.random.default_rng(seed)
    preds, truths = [], []
    for _ in range(n_images):
        k = int(rng.integers(1, 4))
        xy = rng.uniform(0, 60, (k, 2))
        wh = rng.uniform(8, 30, (k, 2))
        tb = np.concatenate([xy, xy + wh], 1)
        tl = rng.integers(0, classes, k)
        # detections: jittered copies of some true boxes (some with the wrong class) and strays
        pb, pl = [], []
        for b, lab in zip(tb, tl):
            if rng.random() < 0.8:
                pb.append(b + rng.normal(0, 4, 4))
                pl.append(lab if rng.random() < 0.85 else (lab + 1) % classes)
        for _ in range(int(rng.integers(0, 3))):
            s = rng.uniform(0, 60, 2)
            pb.append(np.concatenate([s, s + rng.uniform(8, 30, 2)]))
            pl.append(int(rng.integers(0, classes)))
        pb = np.asarray(pb, dtype=np.float64).reshape(-1, 4)
        pb[:, 2:] = np.maximum(pb[:, 2:], pb[:, :2] + 1)
        preds.append({"boxes": pb, "scores": rng.uniform(0.05, 1, len(pb)), "labels": np.asarray(pl, dtype=np.int64)})
        truths.append({"boxes": tb, "labels": tl})
    return preds, truths


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_map_at_05_equals_the_naive_coco_loop(seed):
    preds, truths = random_set(seed)
    out = score_detections(preds, truths, ["a", "b"])
    want50 = np.mean([naive_ap(preds, truths, c, 0.5) for c in (0, 1)])
    assert out["map_50"] == pytest.approx(want50, abs=1e-4)
    want = np.mean([[naive_ap(preds, truths, c, t) for c in (0, 1)] for t in np.linspace(0.5, 0.95, 10)])
    assert out["map"] == pytest.approx(want, abs=1e-4)
    assert out["images"] == 12 and out["boxes"] == sum(len(t["boxes"]) for t in truths)


def test_a_perfect_detector_scores_one_and_a_class_never_seen_is_none():
    truths = [{"boxes": np.array([[0, 0, 10, 10.0]]), "labels": np.array([0])}]
    preds = [{"boxes": np.array([[0, 0, 10, 10.0]]), "scores": np.array([0.9]), "labels": np.array([0])}]
    out = score_detections(preds, truths, ["a", "b"])
    assert out["map"] == pytest.approx(1.0) and out["map_50"] == pytest.approx(1.0)
    assert out["per_class_ap50_95"] == {"a": pytest.approx(1.0), "b": None}
    assert out["corloc"] == 1.0 and out["matches"]["f1"] == 1.0


def test_matches_and_corloc_by_hand():
    t = lambda b, lab: {"boxes": torch.tensor(b, dtype=torch.float32), "labels": torch.tensor(lab)}  # noqa: E731
    truth = t([[0, 0, 10, 10], [20, 20, 30, 30]], [0, 1])
    pred = {"boxes": torch.tensor([[0, 0, 10, 11], [0, 0, 10, 10], [20, 20, 30, 30], [50, 50, 60, 60], [20, 20, 31, 30]], dtype=torch.float32),
            "scores": torch.tensor([0.9, 0.8, 0.7, 0.6, 0.3]), "labels": torch.tensor([0, 0, 0, 1, 1])}
    # scores ≥ 0.5: the first matches box 0; the second is a duplicate (fp); the third has the
    # wrong class (fp); the fourth overlaps nothing (fp); the last is below the score: box 1 missed
    assert match_counts(pred, truth) == (1, 3, 1)
    assert match_counts(pred, truth, score=0.2) == (2, 3, 0)
    assert top_box_iou(pred, truth) == pytest.approx(100 / 110)
    assert top_box_hit(pred, truth) and top_box_hit(pred, truth, same_class=True)
    wrong = {**pred, "labels": torch.tensor([1, 0, 0, 1, 1])}
    assert top_box_hit(wrong, truth) and not top_box_hit(wrong, truth, same_class=True)
    none = {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.long)}
    assert match_counts(none, truth) == (0, 0, 2) and not top_box_hit(none, truth)
    assert prf(1, 3, 1) == {"precision": 0.25, "recall": 0.5, "f1": pytest.approx(2 / 6)}

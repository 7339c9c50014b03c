"""Classification metrics from predictions and labels (pure numpy + scikit-learn)."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support


def classification_metrics(
    *, predictions: np.ndarray, labels: np.ndarray, classes: Sequence[str], top_pairs: int = 5
) -> dict[str, Any]:
    """Accuracy, per-class precision/recall/F1/support, the confusion matrix (rows = true
    class, columns = predicted) and the most confused (true → predicted) pairs."""
    predictions = np.asarray(predictions)
    labels = np.asarray(labels)
    ids = list(range(len(classes)))
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predictions, labels=ids, zero_division=0
    )
    cm = confusion_matrix(labels, predictions, labels=ids)
    off = cm.copy()
    np.fill_diagonal(off, 0)
    order = np.argsort(off, axis=None)[::-1][:top_pairs]
    pairs = [
        {"true": classes[i], "predicted": classes[j], "count": int(off[i, j])}
        for i, j in zip(*np.unravel_index(order, off.shape))
        if off[i, j] > 0
    ]
    return {
        "accuracy": float((predictions == labels).mean()) if len(labels) else float("nan"),
        "num_images": int(len(labels)),
        "per_class": [
            {
                "class": classes[i],
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i in ids
        ],
        "confusion_matrix": cm.tolist(),
        "most_confused": pairs,
    }


def calibration(probs: np.ndarray, labels: np.ndarray, *, bins: int = 15) -> dict[str, Any]:
    """Expected calibration error (Guo et al., 2017: equal-width confidence bins, the
    count-weighted mean of |accuracy − mean confidence|; 15 bins as there), the negative
    log-likelihood, and the reliability table (per bin: count, mean confidence, accuracy)."""
    probs, labels = np.asarray(probs, dtype=np.float64), np.asarray(labels)
    conf, pred = probs.max(1), probs.argmax(1)
    right = pred == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, bins - 1)  # bin i holds (edge i, edge i+1]
    table, ece = [], 0.0
    for i in range(bins):
        sel = which == i
        n = int(sel.sum())
        c, a = (float(conf[sel].mean()), float(right[sel].mean())) if n else (None, None)
        if n:
            ece += n / len(conf) * abs(a - c)
        table.append({"low": float(edges[i]), "high": float(edges[i + 1]), "count": n, "confidence": c, "accuracy": a})
    nll = float(-np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, None)).mean()) if len(labels) else float("nan")
    return {"ece": float(ece), "nll": nll, "accuracy": float(right.mean()) if len(labels) else float("nan"), "bins": table}


def paired_difference(a_right: np.ndarray, b_right: np.ndarray) -> dict[str, Any]:
    """Whether two classifiers scored on the same images differ by more than noise: the images
    only A gets right (``a_only``) and only B (``b_only``), and McNemar's z = (a_only −
    b_only) / √(a_only + b_only); |z| > 2 is more than noise (about 95 %)."""
    a_right, b_right = np.asarray(a_right, bool), np.asarray(b_right, bool)
    a_only, b_only = int((a_right & ~b_right).sum()), int((b_right & ~a_right).sum())
    z = 0.0 if a_only + b_only == 0 else (a_only - b_only) / float(np.sqrt(a_only + b_only))
    return {"a_only": a_only, "b_only": b_only, "z": z, "beyond_noise": abs(z) > 2.0}

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

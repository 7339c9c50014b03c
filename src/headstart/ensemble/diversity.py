"""How different the members are: an ensemble gains only where its members disagree.

- ``disagreement``: for each pair of members, the share of images on which their top classes
  differ (Kuncheva & Whitaker's disagreement measure, 2003).
- ``diversity``: that matrix, its mean over pairs, the oracle accuracy (the share of images
  some member gets right: what no combination rule can beat), and the mean pairwise
  correlation of the members' error indicators (0: independent errors, 1: identical errors).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def disagreement(probs: np.ndarray) -> np.ndarray:
    """(M, N, C) → (M, M): share of images where members i and j predict different classes."""
    top = np.asarray(probs).argmax(2)
    return (top[:, None, :] != top[None, :, :]).mean(2)


def diversity(probs: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    probs, labels = np.asarray(probs), np.asarray(labels)
    m = len(probs)
    d = disagreement(probs)
    wrong = (probs.argmax(2) != labels[None]).astype(np.float64)
    pairs = [(i, j) for i in range(m) for j in range(i + 1, m)]
    corr = []
    for i, j in pairs:
        a, b = wrong[i], wrong[j]
        if a.std() > 0 and b.std() > 0:
            corr.append(float(np.corrcoef(a, b)[0, 1]))
    return {
        "disagreement": d.tolist(),
        "mean_disagreement": float(np.mean([d[i, j] for i, j in pairs])) if pairs else 0.0,
        "oracle_accuracy": float((wrong == 0).any(0).mean()),
        "error_correlation": float(np.mean(corr)) if corr else None,
    }

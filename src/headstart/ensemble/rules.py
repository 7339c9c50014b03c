"""How several models' class probabilities become one table (seed 000's voting rules).

Every rule takes the members' probabilities as one array ``(M, N, C)`` (M members, N images,
C classes, in the same class order) and returns ``(N, C)`` rows that sum to 1, so whatever
reads a model's probabilities (``eval``, ``predict``, a student's targets) reads an ensemble's.

- ``soft_vote``: the (weighted) mean of the probabilities.
- ``hard_vote``: each member votes for its top class; the rows are the (weighted) vote shares.
  A tie goes to the tied class with the higher mean probability (the soft vote), by adding
  1e-6 × that mean: far below one vote's share for any ensemble of fewer than 10⁵ equal members.
- ``greedy_weights``: Caruana et al. (2004) ensemble selection, as auto-sklearn and AutoGluon
  use it — start from the best member on validation, then repeatedly add (with replacement)
  the member whose addition lowers the validation loss most; the weights are how often each
  was picked. A member that never helps gets weight 0.
"""

from __future__ import annotations

import numpy as np

TIE_BREAK = 1e-6


def _check(probs: np.ndarray, weights: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 3:
        raise ValueError(f"member probabilities must be (members, images, classes), not {probs.shape}")
    w = np.ones(len(probs)) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (len(probs),) or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"weights must be {len(probs)} non-negative numbers with a positive sum, not {w}")
    return probs, w / w.sum()


def soft_vote(probs: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """The weighted mean of the members' probabilities."""
    probs, w = _check(probs, weights)
    return np.tensordot(w, probs, axes=1)


def hard_vote(probs: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """The weighted share of members whose top class each class is, ties broken by the soft vote."""
    probs, w = _check(probs, weights)
    m, n, c = probs.shape
    votes = np.zeros((n, c))
    top = probs.argmax(2)
    for i in range(m):
        votes[np.arange(n), top[i]] += w[i]
    votes += TIE_BREAK * np.tensordot(w, probs, axes=1)
    return votes / votes.sum(1, keepdims=True)


def _loss(p: np.ndarray, labels: np.ndarray, metric: str) -> float:
    if metric == "nll":
        return float(-np.log(np.clip(p[np.arange(len(labels)), labels], 1e-12, None)).mean())
    return float((p.argmax(1) != labels).mean())


def greedy_weights(probs: np.ndarray, labels: np.ndarray, *, rounds: int = 25, metric: str = "nll") -> np.ndarray:
    """Caruana's ensemble selection on validation (``probs`` (M, N, C) on the N validation
    images with ``labels``): ``rounds`` picks with replacement, the first the best single member;
    each pick minimises ``metric`` (``nll`` or ``error``) of the mean of the picks so far, the
    lowest member index on a tie. Returns the weights (counts / rounds)."""
    if metric not in ("nll", "error"):
        raise ValueError(f"metric must be 'nll' or 'error', not {metric!r}")
    probs, _ = _check(probs, None)
    labels = np.asarray(labels)
    counts = np.zeros(len(probs))
    total = np.zeros(probs.shape[1:])
    for r in range(max(1, rounds)):
        losses = [_loss((total + p) / (r + 1), labels, metric) for p in probs]
        best = int(np.argmin(losses))  # argmin takes the first of equal losses
        counts[best] += 1
        total += probs[best]
    return counts / counts.sum()

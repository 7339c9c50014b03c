"""How several models' class probabilities become one table (seed 000's voting rules).

Every rule takes the members' probabilities as one array ``(M, N, C)`` (M members, N images,
C classes, in the same class order) and returns ``(N, C)`` rows that sum to 1, so whatever
reads a model's probabilities (``eval``, ``predict``, a student's targets) reads an ensemble's.

- ``soft_vote``: the (weighted) mean of the probabilities.
- ``hard_vote``: each member votes for its top class; the rows are the (weighted) vote shares.
  A tie goes to the tied class with the higher mean probability (the soft vote), by adding
  1e-4 × that mean: below one vote's share for any ensemble of fewer than 10⁴ equal members,
  and large enough that the difference between two tied classes survives float32 (an exported
  or GPU ensemble computes in it).
- ``greedy_weights``: Caruana et al. (2004) ensemble selection, as auto-sklearn and AutoGluon
  use it — start from the best member on validation, then repeatedly add (with replacement)
  the member whose addition lowers the validation loss most; the weights are how often each
  was picked. A member that never helps gets weight 0.
- ``accuracy_weights``: the other common recipe, weights proportional to each member's
  validation accuracy (a soft vote that trusts the better members more).
- ``fit_stack`` / ``stack``: learned stacking (seed 000's "small FC layer over frozen
  members"): a multinomial logistic regression over the members' log-probabilities, L2
  regularised (scikit-learn's ``LogisticRegression``, C = 1), fitted on held-out images only.

The rules the ``headstart ensemble --rule`` option offers are the entries of :data:`RULES`: a
rule is one registered :class:`Rule` (how it is fitted on held-out images, how it combines).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..registry import Registry

TIE_BREAK = 1e-4
LOG_FLOOR = 1e-7
"""Probabilities are clipped here before their log enters the stacking layer (a member that is
certain would otherwise give -inf)."""


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


def accuracy_weights(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Each member's validation accuracy, normalised to sum to 1 (equal weights when every
    member scores 0)."""
    probs, _ = _check(probs, None)
    acc = (probs.argmax(2) == np.asarray(labels)[None]).mean(1)
    return np.ones(len(probs)) / len(probs) if acc.sum() == 0 else acc / acc.sum()


def stack_features(probs: np.ndarray) -> np.ndarray:
    """(M, N, C) → (N, M·C): each image's members' log-probabilities side by side (member 0's
    C columns first)."""
    probs = np.asarray(probs, dtype=np.float64)
    m, n, c = probs.shape
    return np.log(np.clip(probs, LOG_FLOOR, None)).transpose(1, 0, 2).reshape(n, m * c)


def fit_stack(probs: np.ndarray, labels: np.ndarray, *, num_classes: int | None = None, c: float = 1.0) -> dict[str, np.ndarray]:
    """The stacking layer fitted on held-out images: ``coef`` (C, M·C) and ``intercept`` (C,).

    A class absent from ``labels`` (a held-out set too small to hold every class) keeps a
    bias of −30: the layer never predicts what it never saw, and says so by its weights."""
    from sklearn.linear_model import LogisticRegression

    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels)
    k = probs.shape[2] if num_classes is None else num_classes
    x = stack_features(probs)
    seen = np.unique(labels)
    coef, intercept = np.zeros((k, x.shape[1])), np.full(k, -30.0)
    if len(seen) == 1:
        intercept[seen[0]] = 0.0
        return {"coef": coef, "intercept": intercept}
    lr = LogisticRegression(C=c, max_iter=2000).fit(x, labels)
    if len(seen) == 2:  # scikit-learn keeps one row for two classes: class 1 against class 0
        coef[seen[1]], intercept[seen[1]], intercept[seen[0]] = lr.coef_[0], lr.intercept_[0], 0.0
    else:
        coef[lr.classes_], intercept[lr.classes_] = lr.coef_, lr.intercept_
    return {"coef": coef, "intercept": intercept}


def stack(probs: np.ndarray, params: dict[str, np.ndarray]) -> np.ndarray:
    """The stacking layer's probabilities: softmax(features · coefᵀ + intercept)."""
    z = stack_features(probs) @ np.asarray(params["coef"]).T + np.asarray(params["intercept"])
    z -= z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


@dataclass(frozen=True)
class Rule:
    """An ensemble rule: ``fit(probs, labels)`` on held-out images gives its parameters (arrays,
    saved in the ensemble's ``model.safetensors``); ``combine(probs, params)`` gives the rows.
    ``fitted`` rules need held-out labeled images; the others combine as they are."""

    fit: Callable[[np.ndarray, np.ndarray], dict[str, np.ndarray]]
    combine: Callable[[np.ndarray, dict[str, np.ndarray]], np.ndarray]
    fitted: bool
    summary: str


def _equal(probs: np.ndarray, labels: np.ndarray | None = None) -> dict[str, np.ndarray]:
    return {"weights": np.full(len(probs), 1.0 / len(probs))}


RULES: Registry[Rule] = Registry("ensemble rule")
RULES.register("soft")(Rule(_equal, lambda p, q: soft_vote(p, q["weights"]), False, "the mean of the members' probabilities"))
RULES.register("hard")(Rule(_equal, lambda p, q: hard_vote(p, q["weights"]), False,
                            "one vote per member for its top class; ties go to the higher mean probability"))
RULES.register("weighted")(Rule(
    lambda p, y: {"weights": greedy_weights(p, y)}, lambda p, q: soft_vote(p, q["weights"]), True,
    "a weighted mean, weights by Caruana's greedy selection with replacement on held-out images (25 picks, NLL)"))
RULES.register("accuracy")(Rule(
    lambda p, y: {"weights": accuracy_weights(p, y)}, lambda p, q: soft_vote(p, q["weights"]), True,
    "a weighted mean, weights proportional to each member's held-out accuracy"))
RULES.register("stack")(Rule(
    lambda p, y: fit_stack(p, y), stack, True,
    "a logistic-regression layer (L2, C=1) over the members' log-probabilities, fitted on held-out images"))

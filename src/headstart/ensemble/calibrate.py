"""Temperature scaling of an ensemble's combined probabilities (Guo et al., 2017).

Averaging members that disagree makes the mean less confident than it is right (the soft vote
of three fine-tuned Lite0 at 100 labels per class: ECE 0.052 where its members had 0.023–0.048);
one fitted number fixes that without touching which class wins: ``p_T = softmax(log p / T)``,
``T`` minimising the negative log-likelihood on held-out images no member trained on. ``T > 1``
softens, ``T < 1`` sharpens. The argmax, and so the accuracy, is unchanged
for every ``T > 0``.

Honest on small held-out sets: ``calibrate`` fits ``T`` on every held-out image but judges it out
of fold (each fold scaled by the ``T`` fitted on the other folds) and keeps ``T = 1`` unless that
lowers the held-out NLL. The predictions it is given are out of fold already for the fitted rules
(``select.compare_rules``), so a stacking layer's in-sample confidence never sets ``T``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .rules import LOG_FLOOR

BOUNDS = (0.25, 4.0)
"""The temperatures searched (on a log scale). Guo et al. find 1–3 for deep networks; a held-out
set that every member gets right pulls the NLL-optimal T towards 0 (certainty), which the next
wrong image would pay for with an enormous loss, so the search stops at a 4× sharpening."""
MIN_IMAGES = 50
"""Fewer held-out images than this keep T = 1: one number fitted on a handful of images, most of
them right, says more about those images than about the ensemble."""


def apply_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log p / T) per row (``probs`` (N, C), rows summing to 1)."""
    z = np.log(np.clip(np.asarray(probs, dtype=np.float64), LOG_FLOOR, None)) / float(temperature)
    z -= z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def _nll(probs: np.ndarray, labels: np.ndarray) -> float:
    return float(-np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-12, None)).mean())


def fit_temperature(probs: np.ndarray, labels: np.ndarray) -> float:
    """The ``T`` in :data:`BOUNDS` minimising the NLL of ``apply_temperature(probs, T)`` on
    ``labels`` (a bounded scalar search over log T; the NLL is convex in 1/T)."""
    from scipy.optimize import minimize_scalar

    labels = np.asarray(labels)
    lo, hi = np.log(BOUNDS[0]), np.log(BOUNDS[1])
    res = minimize_scalar(lambda s: _nll(apply_temperature(probs, float(np.exp(s))), labels), bounds=(lo, hi), method="bounded",
                          options={"xatol": 1e-4})
    return float(np.exp(res.x))


def calibrate(probs: np.ndarray, labels: np.ndarray, *, folds: int, seed: int = 0) -> dict[str, Any]:
    """Fit the temperature on held-out ``probs`` (N, C) and judge it out of fold: ``temperature``
    (1.0 when it does not lower the out-of-fold NLL, or when ``folds`` < 2), the held-out NLL
    and ECE before and after (out of fold), and ``why`` in one sentence."""
    from sklearn.model_selection import StratifiedKFold

    from ..report.metrics import calibration

    probs, labels = np.asarray(probs, dtype=np.float64), np.asarray(labels)
    before = calibration(probs, labels)
    out = {"temperature": 1.0, "held_out_images": int(len(labels)), "nll_before": before["nll"], "ece_before": before["ece"]}
    if len(labels) < MIN_IMAGES:
        return {**out, "nll_after": before["nll"], "ece_after": before["ece"],
                "why": f"temperature 1: {len(labels)} held-out images are too few to fit one on (at least {MIN_IMAGES}; give --val DATA)"}
    if folds < 2:
        return {**out, "nll_after": before["nll"], "ece_after": before["ece"],
                "why": "temperature 1: a class has fewer than 2 held-out images, so no fold could judge a fitted temperature"}
    scaled = np.zeros_like(probs)
    for fit_idx, score_idx in StratifiedKFold(folds, shuffle=True, random_state=seed).split(np.zeros(len(labels)), labels):
        scaled[score_idx] = apply_temperature(probs[score_idx], fit_temperature(probs[fit_idx], labels[fit_idx]))
    after = calibration(scaled, labels)
    t = fit_temperature(probs, labels)
    out |= {"nll_after": after["nll"], "ece_after": after["ece"], "fitted_temperature": t}
    if after["nll"] >= before["nll"]:
        return {**out, "why": (f"temperature 1: the fitted {t:.2f} did not lower the held-out NLL out of fold "
                               f"({after['nll']:.3f} vs {before['nll']:.3f})")}
    return {**out, "temperature": t,
            "why": (f"temperature {t:.2f}, fitted on {len(labels)} held-out images: out of fold NLL {before['nll']:.3f} → "
                    f"{after['nll']:.3f}, ECE {before['ece']:.3f} → {after['ece']:.3f} (accuracy unchanged)")}

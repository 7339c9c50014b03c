"""Which rule combines the members best, judged on held-out images only.

Soft and hard voting fit nothing, so their held-out score is honest as it is. The fitted rules
(``weighted``, ``accuracy``, ``stack``) would be scored on the very images they were fitted on,
which flatters them; each is scored here out of fold instead: the held-out images are split
into stratified folds, each fold is combined by the rule fitted on the other folds, and the
assembled predictions are scored once. ``choose_rule`` keeps the soft vote (nothing fitted,
nothing to overfit) unless another rule's out-of-fold accuracy beats it by more than noise
(McNemar's |z| > 2 on the same images), then the best such by accuracy, NLL breaking ties.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .rules import RULES

DEFAULT = "soft"
MAX_FOLDS = 5


def folds_for(labels: np.ndarray, wanted: int = MAX_FOLDS) -> int:
    """How many stratified folds the held-out labels allow: at most ``wanted``, at most the
    smallest class's count; 0 when a class has fewer than 2 images (no fold could hold it out
    and still train on it)."""
    _, counts = np.unique(labels, return_counts=True)
    k = int(min(wanted, counts.min())) if len(counts) else 0
    return k if k >= 2 else 0


def out_of_fold(name: str, probs: np.ndarray, labels: np.ndarray, *, folds: int, seed: int = 0) -> np.ndarray:
    """Rule ``name``'s predictions for every held-out image, each from the rule fitted on the
    folds that do not hold it."""
    from sklearn.model_selection import StratifiedKFold

    rule = RULES.get(name)
    out = np.zeros(probs.shape[1:])
    for fit_idx, score_idx in StratifiedKFold(folds, shuffle=True, random_state=seed).split(np.zeros(len(labels)), labels):
        params = rule.fit(probs[:, fit_idx], labels[fit_idx])
        out[score_idx] = rule.combine(probs[:, score_idx], params)
    return out


def _score(p: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    from ..report.metrics import calibration

    c = calibration(p, labels)
    return {"accuracy": c["accuracy"], "nll": c["nll"], "ece": c["ece"]}


def compare_rules(probs: np.ndarray, labels: np.ndarray, *, names: Sequence[str] | None = None, seed: int = 0) -> dict[str, Any]:
    """Every rule's held-out accuracy, NLL and ECE (fitted rules out of fold), with the
    predictions each made (``probs``; ``right``: which images it got right, for the paired
    test)."""
    probs, labels = np.asarray(probs, dtype=np.float64), np.asarray(labels)
    folds = folds_for(labels)
    rows: dict[str, Any] = {}
    for name in names or RULES.names():
        rule = RULES.get(name)
        if rule.fitted:
            if not folds:
                rows[name] = {"available": False, "why": "a class has fewer than 2 held-out images: no fold could score it"}
                continue
            p = out_of_fold(name, probs, labels, folds=folds, seed=seed)
        else:
            p = rule.combine(probs, rule.fit(probs, labels))
        rows[name] = {"available": True, "out_of_fold": rule.fitted, "folds": folds if rule.fitted else None,
                      **_score(p, labels), "right": p.argmax(1) == labels, "probs": p}
    return rows


def choose_rule(rows: dict[str, Any]) -> tuple[str, str]:
    """The rule to use and the sentence that says why (see the module's docstring)."""
    from ..report.metrics import paired_difference

    base = rows[DEFAULT]
    better = []
    for name, r in rows.items():
        if name == DEFAULT or not r.get("available"):
            continue
        d = paired_difference(r["right"], base["right"])
        if d["beyond_noise"] and d["z"] > 0:
            better.append((-r["accuracy"], r["nll"], name, d["z"]))
    n = len(base["right"])
    if not better:
        best = max((r["accuracy"], name == DEFAULT, name) for name, r in rows.items() if r.get("available"))[::2]
        return DEFAULT, (f"soft vote: no rule beats it by more than noise on {n} held-out images (best {best[1]} "
                         f"{best[0]:.3f} vs soft {base['accuracy']:.3f}); it fits nothing, so it cannot overfit them")
    _, _, name, z = min(better)
    return name, (f"{name}: {rows[name]['accuracy']:.3f} vs the soft vote's {base['accuracy']:.3f} on {n} held-out images "
                  f"({'out of fold, ' if rows[name].get('out_of_fold') else ''}McNemar z = {z:.1f})")

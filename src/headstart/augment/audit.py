"""Label-safety audit: does a transform change what a trained model sees?

Each transform family is applied at a few exact magnitudes (rotate by exactly 15°, 45°, 90°,
180°; mirror; zoom; ...) to labeled validation images, and the model's predictions on the
transformed images are compared with those on the originals, class by class: how often the
prediction changes, how much the class's accuracy drops, and which class the changed
predictions go to.

A class that loses ``max_drop`` or more of its accuracy under a transform is one of:

- **label change** — most of its changed predictions go to one other class (a rotated 6 read
  as a 9): the transform turns this class into that one; flagged.
- **erased** — half or more of all classes (at least three) fall to the same class (everything blurred at 8 px
  reads as a 1): the transform destroys what tells the classes apart; flagged.
- **fragile** — the changed predictions scatter: the model is not robust to the transform,
  which says nothing against the label (training with the transform may well help); reported,
  not flagged.

A family is flagged from its mildest flagged magnitude; "safe up to" is the strongest magnitude
below it. The audit is most telling on a model trained without the transform in question
(``--augment none`` or ``light``): a model trained on rotations has been taught to call a
rotated 6 a 6.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from .policies import Step
from .transforms import RANDAUGMENT_OPS, TRANSFORMS, randaugment_op_magnitudes

MAX_DROP = 0.2  # a class losing 20 points of accuracy under a transform is examined
CONCENTRATED = 0.5  # share of a class's changed predictions going to one class: a label change


def audit_families() -> list[str]:
    return [n for n in TRANSFORMS if TRANSFORMS.get(n).exact is not None and TRANSFORMS.get(n).audit_levels]


def run_audit(
    predict: Callable[[torch.Tensor], np.ndarray],
    images: torch.Tensor,
    labels: np.ndarray,
    classes: list[str],
    *,
    families: list[str] | None = None,
    max_drop: float = MAX_DROP,
    log: Callable[[str], None] = lambda msg: None,
) -> dict:
    """Audit every family (or ``families``) on uint8 ``images`` (N, 3, H, W) with true
    ``labels``; ``predict`` maps uint8 images to predicted class indices."""
    labels = np.asarray(labels)
    base = np.asarray(predict(images))
    per_class_n = np.bincount(labels, minlength=len(classes))
    base_acc = _per_class_rate(base == labels, labels, len(classes))
    rows = []
    summary = {}
    for fam_name in families or audit_families():
        fam = TRANSFORMS.get(fam_name)
        safe_up_to = None
        flagged_at = None
        for level in fam.audit_levels:
            pred = np.asarray(predict(fam.exact(images, level)))  # type: ignore[misc]
            changed = pred != base
            acc = _per_class_rate(pred == labels, labels, len(classes))
            flip = _per_class_rate(changed, labels, len(classes))
            per_class = []
            for c, name in enumerate(classes):
                if per_class_n[c] == 0:
                    continue
                moved = pred[(labels == c) & changed]
                target, share = None, 0.0
                if len(moved):
                    counts = np.bincount(moved, minlength=len(classes))
                    target, share = classes[int(counts.argmax())], float(counts.max() / len(moved))
                drop = float(base_acc[c] - acc[c])
                per_class.append({
                    "class": name, "n": int(per_class_n[c]), "accuracy": float(base_acc[c]), "accuracy_transformed": float(acc[c]),
                    "drop": drop, "flip_rate": float(flip[c]), "flips_to": target, "flips_to_share": share,
                    "kind": None if drop < max_drop else ("label change" if share >= CONCENTRATED else "fragile"),
                })
            sinks = [e["flips_to"] for e in per_class if e["kind"] is not None]
            if sinks:
                sink = max(set(sinks), key=sinks.count)
                if sinks.count(sink) >= max(3, (len(classes) + 1) // 2):
                    for e in per_class:
                        if e["kind"] is not None and e["flips_to"] == sink:
                            e["kind"] = "erased"
            for e in per_class:
                e["flagged"] = e["kind"] in ("label change", "erased")
            harmed = [e for e in per_class if e["flagged"]]
            overall = float((pred == labels).mean())
            rows.append({
                "family": fam_name, "magnitude": level, "unit": fam.unit, "accuracy": float((base == labels).mean()),
                "accuracy_transformed": overall, "flip_rate": float(changed.mean()), "per_class": per_class,
                "flagged_classes": [h["class"] for h in harmed],
                "fragile_classes": [e["class"] for e in per_class if e["kind"] == "fragile"],
            })
            log(
                f"{fam_name}:{level:g}: accuracy {float((base == labels).mean()):.3f} → {overall:.3f}, "
                f"{changed.mean():.0%} of predictions change"
                + (f"; flagged: {', '.join(h['class'] + ' → ' + str(h['flips_to']) + ' (' + h['kind'] + ')' for h in harmed)}" if harmed else "")
            )
            if harmed and flagged_at is None:
                flagged_at = level
            if flagged_at is None:
                safe_up_to = level
        summary[fam_name] = {"safe_up_to": safe_up_to, "flagged_at": flagged_at, "unit": fam.unit}
    return {
        "max_drop": max_drop,
        "num_images": int(len(labels)),
        "accuracy": float((base == labels).mean()),
        "rows": rows,
        "families": summary,
        "flagged": sorted(f for f, s in summary.items() if s["flagged_at"] is not None),
        "recommended_invariances": recommended_invariances(summary),
    }


def _per_class_rate(hit: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    n = np.bincount(labels, minlength=k)
    return np.bincount(labels, weights=hit.astype(np.float64), minlength=k) / np.maximum(n, 1)


def recommended_invariances(summary: dict) -> str:
    """The ``--invariances`` string the audit supports: every family at its strongest safe
    magnitude; families unsafe at their mildest audited magnitude left out."""
    parts = []
    for fam, s in summary.items():
        if s["safe_up_to"] is None:
            continue
        unit = TRANSFORMS.get(fam).unit
        parts.append(fam if unit == "probability" else f"{fam}:{s['safe_up_to']:g}")
    return ",".join(parts)


def unsafe_magnitudes(audit: dict) -> dict[str, float]:
    """family → the mildest magnitude the audit flagged."""
    return {f: s["flagged_at"] for f, s in audit["families"].items() if s["flagged_at"] is not None}


def flagged_steps(steps: list[Step], audit: dict, size: int) -> list[str]:
    """The steps of a policy that reach a magnitude the audit flagged (RandAugment: the ops
    whose family was flagged at or below the op's magnitude)."""
    unsafe = unsafe_magnitudes(audit)
    out = []
    for s in steps:
        if s.family == "randaugment":
            mags = randaugment_op_magnitudes(int(round(s.magnitude)), size)
            bad = [
                op for op, f in RANDAUGMENT_OPS.items()
                if f in unsafe and (s.ops is None or op in s.ops) and TRANSFORMS.get(f).milder_or_equal(unsafe[f], mags[op])
            ]
            if bad:
                out.append(f"{s.describe()} (its {'/'.join(bad)} ops)")
        elif s.family in unsafe and (
            TRANSFORMS.get(s.family).unit == "probability" or TRANSFORMS.get(s.family).milder_or_equal(unsafe[s.family], s.magnitude)
        ):
            out.append(f"{s.describe()} (flagged from {s.family}:{unsafe[s.family]:g})")
    return out

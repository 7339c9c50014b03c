"""Bias audit: where the CAM's energy falls, per class, and which classes look at the wrong thing.

Each map is normalised to sum to one, so its "energy" in a region is the share of the evidence
found there. Regions are fixed fractions of the square the model sees:

- centre: the middle half of each side (25 % of the area);
- border: the band within one eighth of the side from any edge (43.75 % of the area);
- inside: the given object boxes or masks, when ground truth is supplied.

A map spread evenly would put 25 % in the centre and 43.75 % on the border. A class is flagged
``border`` when its mean border share is at least 50 % — most of its evidence lies in a band
that holds no object in a centred photo, the signature of watermarks, frames and backgrounds
(the dataset-bias example of the notes) — or when it is at least twice the median of the other
classes and at least 25 %: the classes of one data set share its framing, so a class that looks
at the border far more than the rest has found something there. (A corner mark planted on every
training Shirt of Fashion-MNIST drew 43 % of the Shirt evidence to the border, against 15 % for
the other classes: missed by the absolute rule, caught by the relative one; no clean run in
``benchmarks/results/explain.md`` has a class above 1.6× its peers.) A class is flagged
``outside`` when, with ground truth, less than half
of its evidence lies inside the object *and* the object holds less than twice the evidence an
even map would give it (``inside / area < 2``). The second condition keeps thin or small objects
from being flagged only because a coarse map (5 × 5 cells for EfficientNet at 160 px) cannot fit
inside them: on placed Fashion-MNIST, trousers drew 34 % of the evidence into 12 % of the image —
concentrated on the object, not looking elsewhere (``benchmarks/results/explain.md``). Each flag
carries the images that show it most.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

BORDER_FRACTION = 1 / 8
BORDER_FLAG = 0.5
INSIDE_FLAG = 0.5
ENRICHMENT_FLAG = 2.0
RELATIVE_FLAG = 2.0
RELATIVE_MIN = 0.25


def region_masks(side: int) -> dict[str, np.ndarray]:
    """Centre and border masks of a ``side`` × ``side`` square."""
    yy, xx = np.mgrid[0:side, 0:side]
    c0, c1 = side / 4, side * 3 / 4
    centre = (yy + 0.5 >= c0) & (yy + 0.5 < c1) & (xx + 0.5 >= c0) & (xx + 0.5 < c1)
    b = side * BORDER_FRACTION
    border = (yy + 0.5 < b) | (yy + 0.5 >= side - b) | (xx + 0.5 < b) | (xx + 0.5 >= side - b)
    return {"centre": centre, "border": border}


def energy_shares(cams: np.ndarray, inside: Sequence[np.ndarray | None] | None = None) -> dict[str, np.ndarray]:
    """Per image: share of CAM energy in the centre, on the border and (when a mask is given for
    that image) inside the object; NaN where undefined (an all-zero map, no mask)."""
    n, side = len(cams), cams.shape[-1] if len(cams) else 0
    total = cams.reshape(n, -1).sum(1)
    ok = total > 0
    regions = region_masks(side) if n else {}
    out = {}
    for name, m in regions.items():
        share = np.full(n, np.nan)
        share[ok] = (cams[ok] * m).sum(axis=(-2, -1)) / total[ok]  # no map with energy: all NaN
        out[name] = share
    ins = np.full(n, np.nan)
    if inside is not None:
        for i, m in enumerate(inside):
            if m is not None and ok[i]:
                ins[i] = float((cams[i] * m).sum() / total[i])
    out["inside"] = ins
    return out


def bias_audit(
    cams: np.ndarray,
    labels: np.ndarray,
    classes: Sequence[str],
    *,
    predicted: np.ndarray | None = None,
    inside: Sequence[np.ndarray | None] | None = None,
    examples: int = 4,
    border_flag: float = BORDER_FLAG,
    inside_flag: float = INSIDE_FLAG,
    enrichment_flag: float = ENRICHMENT_FLAG,
    relative_flag: float = RELATIVE_FLAG,
    relative_min: float = RELATIVE_MIN,
) -> dict[str, Any]:
    """Per class (by true label): mean centre / border / inside shares, flags and example indices.

    Args:
        cams: (N, S, S) non-negative maps, e.g. ``CamResult.cams``.
        labels: true class of each image.
        classes: class names.
        predicted: predicted class of each image (adds each class's accuracy to the rows).
        inside: per image, the object mask in the same square, or ``None``.
        examples: how many images to name per flagged class (most extreme first).
    """
    shares = energy_shares(cams, inside)
    side = cams.shape[-1] if len(cams) else 0
    regions = region_masks(side) if side else {"centre": np.zeros(1), "border": np.zeros(1)}
    rows, members = [], []
    for c, name in enumerate(classes):
        idx = np.nonzero(labels == c)[0]
        if len(idx) == 0:
            continue
        row: dict[str, Any] = {"class": name, "images": int(len(idx))}
        for key in ("centre", "border", "inside"):
            v = shares[key][idx]
            row[key] = float(np.nanmean(v)) if np.isfinite(v).any() else None
        row["with_ground_truth"] = int(np.isfinite(shares["inside"][idx]).sum())
        areas = [float(inside[i].mean()) for i in idx if inside is not None and inside[i] is not None]
        row["object_area"] = float(np.mean(areas)) if areas else None
        row["enrichment"] = row["inside"] / row["object_area"] if row["inside"] is not None and row["object_area"] else None
        if predicted is not None:
            row["accuracy"] = float((predicted[idx] == c).mean())
        row["flags"] = []
        rows.append(row)
        members.append(idx)
    flags = []
    for row, idx in zip(rows, members):
        name = row["class"]
        others = [r["border"] for r in rows if r is not row and r["border"] is not None]
        typical = float(np.median(others)) if others else None
        row["border_vs_other_classes"] = row["border"] / typical if row["border"] is not None and typical else None
        absolute = row["border"] is not None and row["border"] >= border_flag
        ratio_ok = (row["border_vs_other_classes"] or 0.0) >= relative_flag or (typical == 0.0 and (row["border"] or 0.0) > 0)
        relative = ratio_ok and (row["border"] or 0.0) >= relative_min
        if absolute or relative:
            order = idx[np.argsort(-np.nan_to_num(shares["border"][idx], nan=-1))][:examples]
            row["flags"].append("border")
            why = (f"{row['border']:.0%} of the evidence lies on the image border (an even map puts {regions['border'].mean():.0%} there"
                   + (f"; the other classes' median is {typical:.0%}" if typical else "") + ")")
            flags.append({
                "class": name, "kind": "border", "value": row["border"],
                "message": f"{name}: {why} — look for frames, watermarks or backgrounds that come with this class",
                "examples": order.tolist(),
            })
        if row["inside"] is not None and row["inside"] < inside_flag and (row["enrichment"] or 0.0) < enrichment_flag:
            with_gt = idx[np.isfinite(shares["inside"][idx])]
            order = with_gt[np.argsort(shares["inside"][with_gt])][:examples]
            row["flags"].append("outside")
            flags.append({
                "class": name, "kind": "outside", "value": row["inside"],
                "message": f"{name}: only {row['inside']:.0%} of the evidence lies inside the object, which covers {row['object_area']:.0%} "
                "of the image — the model looks elsewhere",
                "examples": order.tolist(),
            })
    return {
        "regions": {
            "centre": "middle half of each side", "border": f"band within 1/{int(1 / BORDER_FRACTION)} of the side from any edge",
            "even_map_centre": float(regions["centre"].mean()), "even_map_border": float(regions["border"].mean()),
        },
        "thresholds": {"border": border_flag, "border_vs_other_classes": relative_flag, "border_relative_min": relative_min,
                       "inside": inside_flag, "enrichment": enrichment_flag},
        "overall": {k: (float(np.nanmean(v)) if np.isfinite(v).any() else None) for k, v in shares.items()},
        "per_class": rows,
        "flags": flags,
        "per_image": {k: [None if not np.isfinite(x) else round(float(x), 4) for x in v] for k, v in shares.items()},
    }

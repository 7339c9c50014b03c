"""Figures for the report (matplotlib, Agg backend): curves, confusion matrix, projections."""

from __future__ import annotations

import io
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def training_curves(history: Sequence[dict[str, Any]]) -> bytes | None:
    """Loss, accuracy and learning rate per epoch (train and, when present, validation);
    phases (head warm-up, fine-tuning) are shaded alike per phase name."""
    if not history:
        return None
    ep = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    for ax, key, title in ((axes[0], "loss", "loss"), (axes[1], "acc", "accuracy")):
        for split, style in (("train", "-"), ("val", "--")):
            ys = [h.get(f"{split}_{key}") for h in history]
            pts = [(e, y) for e, y in zip(ep, ys) if y is not None]
            if pts:
                ax.plot(*zip(*pts), style, label=split)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.legend()
    lrs = [(e, h["lr"]) for e, h in zip(ep, history) if h.get("lr") is not None]
    if lrs:
        axes[2].plot(*zip(*lrs))
    axes[2].set_title("learning rate")
    axes[2].set_xlabel("epoch")
    phases = [h.get("phase") for h in history]
    if len(set(phases)) > 1:
        for ax in axes:
            start = 0
            for i in range(1, len(phases) + 1):
                if i == len(phases) or phases[i] != phases[start]:
                    if phases[start] != phases[-1]:
                        ax.axvspan(ep[start] - 0.5, ep[i - 1] + 0.5, color="0.9", zorder=0)
                    start = i
    return _png(fig)


def confusion(cm: Sequence[Sequence[int]], classes: Sequence[str]) -> bytes:
    """Rows true, columns predicted; counts written in the cells."""
    cm = np.asarray(cm)
    n = len(classes)
    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * n, 0.8 + 0.5 * n))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(n), classes, rotation=45, ha="right")
    ax.set_yticks(range(n), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    top = cm.max() if cm.size else 0
    for i in range(n):
        for j in range(n):
            if cm[i, j]:
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8, color="white" if cm[i, j] > top / 2 else "black")
    return _png(fig)


def scatter(points: np.ndarray, labels: np.ndarray, classes: Sequence[str], wrong: np.ndarray, title: str) -> bytes:
    """2-D points coloured by true class; misclassified images drawn as black-edged crosses."""
    fig, ax = plt.subplots(figsize=(7, 5.5))
    cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
    for c, name in enumerate(classes):
        m = labels == c
        if m.any():
            ax.scatter(points[m & ~wrong, 0], points[m & ~wrong, 1], s=9, color=cmap(c % cmap.N), label=name)
            ax.scatter(points[m & wrong, 0], points[m & wrong, 1], s=30, color=cmap(c % cmap.N), marker="X", edgecolors="black", linewidths=0.6)
    ax.scatter([], [], s=30, color="white", marker="X", edgecolors="black", label="misclassified")
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1, 0.5), markerscale=1.5)
    return _png(fig)


def bars(values: dict[str, float], title: str, *, reference: float | None = None, xlabel: str = "") -> bytes:
    """Horizontal bars (per-class accuracy, shares), with an optional reference line."""
    names = list(values)
    fig, ax = plt.subplots(figsize=(6, 0.5 + 0.28 * len(names)))
    ax.barh(range(len(names)), [values[k] for k in names], color="#4c78a8")
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    if reference is not None:
        ax.axvline(reference, color="crimson", ls="--", lw=1)
    ax.set_xlim(0, 1)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    return _png(fig)


def pool_curves(history: Sequence[dict[str, Any]]) -> bytes | None:
    """Per epoch, what the unlabeled images gave: the share of drawn images kept (mask), the
    share of the pool covered, the pseudo-labels' accuracy by the hidden labels (when known),
    and the lowest, mean and highest per-class threshold."""
    rows = [h for h in history if any(k.startswith("pool_") for k in h)]
    if not rows:
        return None
    ep = [h["epoch"] for h in rows]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
    for key, label in (("pool_mask", "mask rate"), ("pool_coverage", "pool covered"), ("pool_pseudo_acc", "pseudo-label accuracy")):
        pts = [(e, h[key]) for e, h in zip(ep, rows) if h.get(key) is not None]
        if pts:
            axes[0].plot(*zip(*pts), marker="o", label=label)
    axes[0].set_ylim(0, 1.02)
    axes[0].set_title("unlabeled images")
    axes[0].set_xlabel("epoch")
    axes[0].legend()
    th = [(e, h["pool_thresholds"]) for e, h in zip(ep, rows) if h.get("pool_thresholds")]
    if th:
        es, ts = zip(*th)
        axes[1].plot(es, [min(t) for t in ts], label="lowest class")
        axes[1].plot(es, [sum(t) / len(t) for t in ts], label="mean")
        axes[1].plot(es, [max(t) for t in ts], label="highest class")
        axes[1].legend()
    axes[1].set_title("confidence thresholds")
    axes[1].set_xlabel("epoch")
    return _png(fig)


def reliability(tables: dict[str, Sequence[dict[str, Any]]]) -> bytes:
    """Reliability diagram: per confidence bin, accuracy against mean confidence, one line per
    model (``calibration``'s bins); the diagonal is perfect calibration."""
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot([0, 1], [0, 1], color="grey", ls="--", lw=1, label="perfect calibration")
    for name, bins in tables.items():
        pts = [(b["confidence"], b["accuracy"]) for b in bins if b["count"]]
        if pts:
            xs, ys = zip(*pts)
            ax.plot(xs, ys, marker="o", ms=3, lw=2.2 if name.startswith("ensemble") else 1.2, label=name)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (mean of the bin)")
    ax.set_ylabel("accuracy")
    ax.legend(fontsize=7, loc="upper left")
    return _png(fig)


def matrix(values: Sequence[Sequence[float]], names: Sequence[str], title: str) -> bytes:
    """A square matrix of shares (pairwise disagreement), values written in the cells."""
    v = np.asarray(values, dtype=float)
    n = len(names)
    fig, ax = plt.subplots(figsize=(1.5 + 0.7 * n, 1.0 + 0.6 * n))
    ax.imshow(v, cmap="Oranges", vmin=0, vmax=max(1e-9, v.max()))
    ax.set_xticks(range(n), names, rotation=45, ha="right")
    ax.set_yticks(range(n), names)
    for i in range(n):
        for j in range(n):
            ax.text(j, i, f"{v[i, j]:.3f}", ha="center", va="center", fontsize=8)
    ax.set_title(title)
    return _png(fig)

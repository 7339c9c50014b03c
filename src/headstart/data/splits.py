"""Index splits: stratified train/validation, and k labeled images per class.

Small datasets make splits fragile: a purely random 20% validation split of a 12-image class can
easily hold none of it, and then that class's accuracy is never measured. Both splits here work
per class, are reproducible from a seed, and return sorted index arrays into the image set.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from headstart.errors import DataError


def _per_class(labels: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """(label, indices of that label) for each label value, in increasing label order."""
    return [(int(c), np.flatnonzero(labels == c)) for c in np.unique(labels)]


def held_out_count(n: int, val_fraction: float) -> int:
    """How many of a class's ``n`` images ``stratified_split`` holds out: ``round(n *
    val_fraction)``, at least one when the class has two or more, never all of them."""
    if n < 2:
        return 0
    return min(max(int(np.floor(n * val_fraction + 0.5)), 1), n - 1)


def train_count(class_counts: Sequence[int], val_fraction: float) -> int:
    """How many labeled images train after ``stratified_split`` at ``val_fraction`` (all of
    them at 0)."""
    if val_fraction <= 0:
        return int(sum(class_counts))
    return int(sum(n - held_out_count(int(n), val_fraction) for n in class_counts))


def stratified_split(
    labels: Sequence[int] | np.ndarray, val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into train and validation with each class in the same proportion.

    Each class contributes ``round(n * val_fraction)`` images to validation, but at least one
    when it has two or more images (so every class is measured) and never all of them (so every
    class is trained on). A class with a single image stays in train. Unlabeled images (``-1``)
    are split like one more class.

    Args:
        labels: Label of each image.
        val_fraction: Share of each class held out, strictly between 0 and 1.
        seed: Seed of the shuffle inside each class; the same seed gives the same split.

    Returns:
        ``(train_idx, val_idx)``: sorted, disjoint int64 arrays that together cover every index.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    y = np.asarray(labels, dtype=np.int64).reshape(-1)
    rng = np.random.default_rng(seed)
    train_parts: list[np.ndarray] = []
    val_parts: list[np.ndarray] = []
    for _, idx in _per_class(y):
        n_val = held_out_count(len(idx), val_fraction)
        shuffled = rng.permutation(idx)
        val_parts.append(shuffled[:n_val])
        train_parts.append(shuffled[n_val:])
    return _sorted_concat(train_parts), _sorted_concat(val_parts)


def few_shot(
    labels: Sequence[int] | np.ndarray,
    k: int,
    seed: int,
    *,
    classes: Sequence[str] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Pick exactly ``k`` labeled images per class; everything else becomes the unlabeled pool.

    This is the setting of the semi-supervised experiments: few labels, many unlabeled images
    drawn from the same distribution. Unlabeled images (``-1``) always go to the pool.

    Args:
        labels: Label of each image.
        k: Labeled images kept per class (at least 1).
        seed: Seed of the per-class choice; the same seed gives the same split.
        classes: Class names, used only to name a class that is too small.

    Returns:
        ``(labeled_idx, pool_idx)``: sorted, disjoint int64 arrays covering every index.

    Raises:
        DataError: A class has fewer than ``k`` images.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1 image per class, got {k}")
    y = np.asarray(labels, dtype=np.int64).reshape(-1)
    rng = np.random.default_rng(seed)
    labeled_parts: list[np.ndarray] = []
    pool_parts: list[np.ndarray] = []
    for c, idx in _per_class(y):
        if c < 0:
            pool_parts.append(idx)
            continue
        if len(idx) < k:
            name = classes[c] if classes is not None and c < len(classes) else str(c)
            raise DataError(
                f"class {name!r} has only {len(idx)} image(s) but {k} labeled images per class "
                f"were asked for; lower k to at most {len(idx)} or add images to that class"
            )
        shuffled = rng.permutation(idx)
        labeled_parts.append(shuffled[:k])
        pool_parts.append(shuffled[k:])
    return _sorted_concat(labeled_parts), _sorted_concat(pool_parts)


def _sorted_concat(parts: list[np.ndarray]) -> np.ndarray:
    if not parts:
        return np.zeros(0, dtype=np.int64)
    return np.sort(np.concatenate(parts)).astype(np.int64)


def seeded_split(n: int, seed: int, *, fraction: float = 0.15, min_val: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """(train, held-out) indices of ``n`` items without class labels (segmentation, detection):
    a seeded ``fraction`` held out, or none when that share is under ``min_val`` items (too few
    to pick an epoch by: the last one is kept)."""
    order = np.random.default_rng(seed).permutation(n)
    n_val = int(round(fraction * n))
    if n_val < min_val or n - n_val < 1:
        return np.arange(n), np.zeros(0, dtype=np.int64)
    return np.sort(order[n_val:]), np.sort(order[:n_val])

"""stratified_split and few_shot: proportions, determinism, disjoint covering index sets."""

from __future__ import annotations

import numpy as np
import pytest

from headstart.data import few_shot, stratified_split
from headstart.errors import DataError

LABELS = np.array([0] * 100 + [1] * 10 + [2] * 2 + [3] * 1 + [4] * 7)
np.random.default_rng(5).shuffle(LABELS)


def _check_partition(a, b, n):
    assert a.dtype == np.int64 and b.dtype == np.int64
    assert (np.diff(a) > 0).all() and (np.diff(b) > 0).all()
    assert len(np.intersect1d(a, b)) == 0
    assert np.array_equal(np.union1d(a, b), np.arange(n))


def test_stratified_proportions():
    train, val = stratified_split(LABELS, 0.2, seed=0)
    _check_partition(train, val, len(LABELS))
    val_counts = np.bincount(LABELS[val], minlength=5).tolist()
    # 100 -> 20; 10 -> 2; 2 -> at least one; 1 -> stays in train; 7 -> round(1.4) = 1
    assert val_counts == [20, 2, 1, 0, 1]


def test_stratified_at_least_one_and_never_all():
    labels = np.array([0, 0, 1, 1, 1])
    train, val = stratified_split(labels, 0.9, seed=1)
    assert np.bincount(labels[val]).tolist() == [1, 2]
    assert np.bincount(labels[train]).tolist() == [1, 1]


def test_stratified_deterministic():
    a = stratified_split(LABELS, 0.3, seed=7)
    b = stratified_split(LABELS, 0.3, seed=7)
    c = stratified_split(LABELS, 0.3, seed=8)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[1], c[1])


def test_stratified_bad_fraction():
    with pytest.raises(ValueError):
        stratified_split(LABELS, 1.0, seed=0)


def test_few_shot_exact_k():
    labels = np.concatenate([LABELS[LABELS != 3], [-1, -1]])
    labeled, pool = few_shot(labels, 2, seed=0)
    _check_partition(labeled, pool, len(labels))
    assert np.bincount(labels[labeled], minlength=5).tolist() == [2, 2, 2, 0, 2]
    assert (labels[labeled] >= 0).all()
    assert set(np.flatnonzero(labels == -1)) <= set(pool.tolist())
    again = few_shot(labels, 2, seed=0)
    assert np.array_equal(again[0], labeled) and np.array_equal(again[1], pool)
    assert not np.array_equal(few_shot(labels, 2, seed=1)[0], labeled)


def test_few_shot_too_small_class():
    with pytest.raises(DataError, match=r"class 'd' has only 1 image"):
        few_shot(LABELS, 2, seed=0, classes=["a", "b", "c", "d", "e"])
    with pytest.raises(DataError, match=r"class '2' has only 2 image"):
        few_shot(LABELS[LABELS != 3], 3, seed=0)

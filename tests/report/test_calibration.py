"""Calibration error, NLL and the paired comparison against loops written out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from headstart.report.metrics import calibration, paired_difference


def _naive_ece(probs, labels, bins):
    total, n = 0.0, len(labels)
    for i in range(bins):
        lo, hi = i / bins, (i + 1) / bins
        members = [j for j in range(n) if (lo < max(probs[j]) <= hi) or (i == 0 and max(probs[j]) == 0.0)]
        if not members:
            continue
        conf = sum(max(probs[j]) for j in members) / len(members)
        acc = sum(int(np.argmax(probs[j]) == labels[j]) for j in members) / len(members)
        total += len(members) / n * abs(acc - conf)
    return total


@pytest.mark.parametrize("n,c,bins,seed", [(50, 3, 15, 0), (200, 10, 10, 1), (7, 2, 5, 2), (300, 4, 1, 3)])
def test_ece_and_nll_match_a_loop(n, c, bins, seed):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, c)) * rng.uniform(0.5, 4)
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    labels = rng.integers(0, c, size=n)
    out = calibration(probs, labels, bins=bins)
    assert out["ece"] == pytest.approx(_naive_ece(probs, labels, bins), abs=1e-12)
    assert out["nll"] == pytest.approx(-sum(math.log(probs[i, labels[i]]) for i in range(n)) / n)
    assert sum(b["count"] for b in out["bins"]) == n and len(out["bins"]) == bins


def test_a_perfectly_calibrated_table_and_an_overconfident_one():
    labels = np.array([0] * 8 + [1] * 2)
    honest = np.tile([0.8, 0.2], (10, 1))  # 80 % confident, 80 % right
    assert calibration(honest, labels)["ece"] == pytest.approx(0.0)
    sure = np.tile([0.99, 0.01], (10, 1))
    assert calibration(sure, labels)["ece"] == pytest.approx(0.19)
    edge = calibration(np.array([[0.5, 0.5], [1.0, 0.0]]), np.array([0, 0]), bins=2)  # 0.5 falls in the lower bin, 1.0 the upper
    assert [b["count"] for b in edge["bins"]] == [1, 1]


def test_paired_difference_counts_the_disagreements():
    a = np.array([1, 1, 1, 1, 1, 0, 1, 1, 0, 1], bool)
    b = np.array([1, 0, 0, 0, 0, 0, 1, 1, 1, 1], bool)
    out = paired_difference(a, b)
    assert (out["a_only"], out["b_only"]) == (4, 1) and out["z"] == pytest.approx(3 / math.sqrt(5)) and out["beyond_noise"] is False
    assert paired_difference(a, a) == {"a_only": 0, "b_only": 0, "z": 0.0, "beyond_noise": False}
    big = paired_difference(np.r_[np.ones(30, bool), np.zeros(20, bool)], np.r_[np.zeros(30, bool), np.ones(20, bool)])
    assert big["z"] == pytest.approx(10 / math.sqrt(50)) and big["beyond_noise"] is False
    clear = paired_difference(np.r_[np.ones(30, bool), np.zeros(5, bool)], np.r_[np.zeros(30, bool), np.ones(5, bool)])
    assert clear["z"] == pytest.approx(25 / math.sqrt(35)) and clear["beyond_noise"] is True
    assert paired_difference(~np.r_[np.ones(30, bool), np.zeros(5, bool)], np.r_[np.ones(30, bool), np.zeros(5, bool)])["z"] < -2

"""Temperature scaling of an ensemble against naive references: the scaling by a loop, the fitted
temperature by a dense grid, the out-of-fold guard, the torch module equal to numpy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from headstart.ensemble import RULES
from headstart.ensemble import calibrate as cal
from headstart.ensemble.model import EnsembleModel

from .test_combine import _MemberOf


def _probs(n, c, seed, sharpen=1.0):
    """True class probabilities, labels drawn from them, and the probabilities raised to
    ``sharpen`` (> 1: overconfident, < 1: underconfident)."""
    rng = np.random.default_rng(seed)
    p = np.exp(rng.normal(size=(n, c)) * 1.5)
    p /= p.sum(1, keepdims=True)
    labels = np.array([rng.choice(c, p=row) for row in p])
    q = p ** sharpen
    return q / q.sum(1, keepdims=True), labels


def test_scaling_is_softmax_of_log_p_over_t_by_a_loop():
    p, _ = _probs(7, 5, 0)
    for t in (0.3, 1.0, 2.5):
        got = cal.apply_temperature(p, t)
        for i in range(len(p)):
            z = [np.log(max(x, cal.LOG_FLOOR)) / t for x in p[i]]
            e = [np.exp(v - max(z)) for v in z]
            np.testing.assert_allclose(got[i], [v / sum(e) for v in e], rtol=1e-12)
        assert (got.argmax(1) == p.argmax(1)).all()


@pytest.mark.parametrize("sharpen", [0.5, 1.0, 3.0])
def test_the_fitted_temperature_is_the_grid_minimum_of_the_nll(sharpen):
    p, y = _probs(400, 6, 1, sharpen)
    grid = np.exp(np.linspace(np.log(cal.BOUNDS[0]), np.log(cal.BOUNDS[1]), 4001))
    nll = [-np.log(cal.apply_temperature(p, t)[np.arange(len(y)), y]).mean() for t in grid]
    t = cal.fit_temperature(p, y)
    assert t == pytest.approx(grid[int(np.argmin(nll))], rel=3e-3)
    # overconfident probabilities (raised to 3) need T ≈ 3 to undo; underconfident (0.5) T ≈ 0.5
    assert t == pytest.approx(sharpen, rel=0.25)


def test_calibration_lowers_the_held_out_error_of_overconfident_probabilities():
    p, y = _probs(600, 5, 2, sharpen=3.0)
    out = cal.calibrate(p, y, folds=5)
    assert out["temperature"] > 2 and out["temperature"] == pytest.approx(out["fitted_temperature"])
    assert out["nll_after"] < out["nll_before"] and out["ece_after"] < out["ece_before"] / 2
    assert "out of fold" in out["why"]


def test_a_temperature_that_does_not_pay_out_of_fold_is_not_kept(monkeypatch):
    p, y = _probs(300, 4, 3, sharpen=1.0)
    monkeypatch.setattr(cal, "fit_temperature", lambda probs, labels: 4.0)  # a bad fit: far too soft
    out = cal.calibrate(p, y, folds=5)
    assert out["temperature"] == 1.0 and out["nll_after"] > out["nll_before"] and "did not lower" in out["why"]
    out = cal.calibrate(p, y, folds=0)
    assert out["temperature"] == 1.0 and "fewer than 2" in out["why"]


def test_too_few_held_out_images_keep_temperature_one():
    # every image right: the NLL-optimal temperature is as sharp as allowed, and would be kept
    p, y = _probs(200, 3, 5, sharpen=1.0)
    right = p.argmax(1) == y
    p, y = p[right], y[right]
    assert cal.calibrate(p, y, folds=5)["temperature"] == pytest.approx(cal.BOUNDS[0], rel=1e-3)
    small = cal.calibrate(p[: cal.MIN_IMAGES - 1], y[: cal.MIN_IMAGES - 1], folds=5)
    assert small["temperature"] == 1.0 and "too few" in small["why"]


@pytest.mark.parametrize("rule", ["soft", "hard", "stack"])
def test_the_torch_ensemble_applies_the_temperature_as_numpy_does(rule):
    rng = np.random.default_rng(4)
    probs = np.exp(rng.normal(size=(3, 30, 4)) * 2)
    probs /= probs.sum(2, keepdims=True)
    labels = rng.integers(0, 4, 30)
    labels[:4] = np.arange(4)
    params = RULES.get(rule).fit(probs, labels)
    expected = cal.apply_temperature(RULES.get(rule).combine(probs, params), 1.7)
    model = EnsembleModel([_MemberOf(k) for k in range(3)], [torch.nn.Identity() for _ in range(3)], rule,
                          {**params, "temperature": np.array([1.7])})
    p = torch.from_numpy(probs).float()
    np.testing.assert_allclose(model.combine(p).numpy(), expected, atol=2e-5)
    np.testing.assert_allclose(model(p).softmax(1).numpy(), expected, atol=2e-5)

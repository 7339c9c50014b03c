"""The voting rules against loops written out by hand, and Caruana selection on a case whose
answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from headstart.ensemble import greedy_weights, hard_vote, soft_vote


def _random_probs(m, n, c, seed):
    rng = np.random.default_rng(seed)
    x = np.exp(rng.normal(size=(m, n, c)) * 2)
    return x / x.sum(2, keepdims=True)


@pytest.mark.parametrize("m,n,c,seed", [(1, 5, 3, 0), (3, 40, 10, 1), (4, 17, 2, 2), (7, 30, 5, 3)])
def test_soft_and_hard_votes_match_loops(m, n, c, seed):
    probs = _random_probs(m, n, c, seed)
    w = np.random.default_rng(seed + 10).uniform(0.1, 2.0, size=m)
    for weights in (None, w):
        ww = np.ones(m) if weights is None else weights
        ww = ww / ww.sum()
        soft = soft_vote(probs, weights)
        for i in range(n):
            expected = sum(ww[k] * probs[k, i] for k in range(m))
            np.testing.assert_allclose(soft[i], expected, atol=1e-12)
            counts = np.zeros(c)
            for k in range(m):
                counts[int(np.argmax(probs[k, i]))] += ww[k]
            hard = hard_vote(probs, weights)[i]
            assert abs(hard.sum() - 1) < 1e-12
            np.testing.assert_allclose(hard, counts / counts.sum(), atol=1e-4)  # the vote shares, less the 1e-4 tie-break
            winners = np.flatnonzero(np.isclose(counts, counts.max()))
            assert hard.argmax() == winners[np.argmax(expected[winners])]  # a tie goes to the higher mean probability


def test_a_hard_tie_goes_to_the_class_the_members_are_surer_of():
    probs = np.array([[[0.9, 0.1]], [[0.4, 0.6]]])  # one vote each; the soft mean favours class 0
    assert hard_vote(probs).argmax(1).tolist() == [0]
    assert hard_vote(probs[::-1]).argmax(1).tolist() == [0]
    assert hard_vote(np.array([[[0.6, 0.4]], [[0.1, 0.9]]])).argmax(1).tolist() == [1]


def test_bad_shapes_and_weights_are_refused():
    probs = _random_probs(2, 3, 4, 0)
    with pytest.raises(ValueError, match="members, images, classes"):
        soft_vote(probs[0])
    for w in ([1.0], [1.0, -1.0], [0.0, 0.0]):
        with pytest.raises(ValueError, match="weights must be 2"):
            hard_vote(probs, np.array(w))


def test_caruana_selection_finds_the_complementary_pair_and_drops_the_bad_member():
    n = 40
    labels = np.array([0, 1] * (n // 2))
    half = np.arange(n) < n // 2
    sure = np.eye(2)[labels] * 0.9 + 0.05
    unsure = np.full((n, 2), 0.5)
    a = np.where(half[:, None], sure, unsure)  # right and sure on the first half only
    b = np.where(half[:, None], unsure, sure)  # and this one on the second half
    bad = np.eye(2)[1 - labels] * 0.9 + 0.05  # always wrong
    w = greedy_weights(np.stack([a, b, bad]), labels, rounds=20)
    assert w[2] == 0 and w[0] == pytest.approx(0.5) and w[1] == pytest.approx(0.5)
    # the first pick is the best single member; a member that adds nothing is never picked
    w1 = greedy_weights(np.stack([bad, a, a]), labels, rounds=5)
    assert w1.tolist() == [0.0, 1.0, 0.0]
    assert greedy_weights(np.stack([a, b]), labels, rounds=1).tolist() == [1.0, 0.0]  # a tie: the lower index
    we = greedy_weights(np.stack([a, b, bad]), labels, rounds=10, metric="error")
    assert we[2] == 0
    with pytest.raises(ValueError, match="metric"):
        greedy_weights(np.stack([a, b]), labels, metric="auc")

"""``-O align`` with a teacher: the table balanced to the labeled class shares, against the
Sinkhorn iterations written out element by element (through ``headstart train``:
tests/semi/test_semi_train.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from headstart.semi.teacher import balance_table


def _naive(table, shares, iterations):
    p = [[max(float(v), 0.0) for v in row] for row in table]
    total = sum(shares)
    s = [v / total for v in shares]
    n, c = len(p), len(s)
    for _ in range(iterations):
        col = [sum(p[i][j] for i in range(n)) / n for j in range(c)]
        p = [[p[i][j] * s[j] / max(col[j], 1e-12) for j in range(c)] for i in range(n)]
        p = [[v / max(sum(row), 1e-12) for v in row] for row in p]
    return np.array(p)


def test_balancing_equals_sinkhorn_by_hand_and_reaches_the_shares():
    rng = np.random.default_rng(0)
    table = rng.dirichlet([0.5, 0.5, 0.5], size=40)
    table[:, 0] += 0.6  # a teacher that over-predicts class 0
    table /= table.sum(1, keepdims=True)
    shares = [2, 1, 1]  # labeled images per class
    for iterations in (1, 3, 50):
        got = balance_table(torch.from_numpy(table).float(), shares, iterations=iterations).numpy()
        np.testing.assert_allclose(got, _naive(table, shares, iterations), atol=1e-5)
    got = balance_table(torch.from_numpy(table).float(), torch.tensor(shares)).numpy()
    np.testing.assert_allclose(got.sum(1), 1.0, atol=1e-5)
    np.testing.assert_allclose(got.mean(0), [0.5, 0.25, 0.25], atol=1e-4)
    assert (got.argmax(1) != table.argmax(1)).any()  # the over-predicted class gives images back


def test_the_least_sure_images_move_first():
    # four images all leaning to class a, two labeled images of each class: the two least sure go to b
    table = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.6, 0.4], [0.55, 0.45]])
    got = balance_table(table, [1, 1])
    assert got.argmax(1).tolist() == [0, 0, 1, 1]
    np.testing.assert_allclose(got.mean(0).numpy(), [0.5, 0.5], atol=1e-4)
    # a table whose shares already match is left as it is
    even = torch.tensor([[0.7, 0.3], [0.3, 0.7]])
    np.testing.assert_allclose(balance_table(even, [1, 1]).numpy(), even.numpy(), atol=1e-6)


@pytest.mark.parametrize("shares", [[1, 1], [1, -1, 1], [0, 0, 0]])
def test_bad_shares_are_refused(shares):
    with pytest.raises(ValueError, match="class shares"):
        balance_table(torch.full((4, 3), 1 / 3), shares)

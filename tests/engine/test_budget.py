"""--time-budget in the loop: training stops at the end of the epoch after which one more
would not fit, says so, and keeps what it learned; a generous budget changes nothing."""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn

from headstart.engine import Batches, Context, fit
from headstart.methods import Setup, create_method


def _fit(deadline):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 5, generator=g), torch.randint(0, 2, (64,), generator=g)
    method = create_method("supervised", nn.Linear(5, 2), None, Setup(num_classes=2))
    opt = torch.optim.SGD(method.trainable().parameters(), lr=0.1)
    result = fit(method, Batches(x, y, batch_size=8, shuffle=True, seed=1), None, epochs=6, optimizer=opt, lr_multipliers=np.ones(48),
                 context=Context(device=torch.device("cpu"), prepare=lambda t: t, show_progress=False, deadline=deadline))
    return result, method.model.weight.detach().clone()


def test_a_budget_that_is_already_spent_stops_after_the_first_epoch():
    result, _ = _fit(time.perf_counter())
    assert result.stopped_at == 1 and len(result.history) == 1


def test_a_generous_budget_trains_every_epoch_exactly_as_without_one():
    with_budget, w1 = _fit(time.perf_counter() + 3600)
    without, w2 = _fit(None)
    assert with_budget.stopped_at is None and len(with_budget.history) == 6
    assert torch.equal(w1, w2) and with_budget.history == without.history

"""``--time-budget``: how many passes over the images fit, from a few measured steps.

Used by the runs whose whole cost is their training steps (``pretrain``, ``segment train``):
a few timed steps on a copy of the networks, then the passes that fit in the budget's
:data:`BUDGET_SHARE`, or one pass over a seeded share of the images when not even one fits.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from ..methods.base import Batch
from .prepare import Prepare

PROBE_STEPS = 3
"""Timed steps (after one warm-up) that plan epochs for ``--time-budget``."""
BUDGET_SHARE = 0.9
"""Of ``--time-budget``, the share planned for training steps; the rest is loading, the
per-epoch validation and writing the folder."""


def plan_epochs(method: Any, x: torch.Tensor, *, labels: torch.Tensor | None = None, prepare: Prepare, batch_size: int, budget_s: float, steps_per_epoch: int,
                 lr: float, probe_batch: Batch | None = None) -> tuple[int, int | None, str]:
    """(epochs, images per epoch or None for all, why) that fit ``budget_s``: a few timed steps
    on a copy of the networks (the run's own weights and random state are left as they were).
    ``labels`` are the targets of ``x`` (image indices by default: a pretext task makes its own);
    ``probe_batch``, a batch as the run's batches yield it, times the method on that batch instead
    (a task whose targets are not one tensor, e.g. boxes)."""
    import copy

    state = torch.random.get_rng_state()
    probe = copy.deepcopy(method)
    probe.attach(probe.trainable())
    opt = torch.optim.AdamW([p for p in probe.trainable().parameters() if p.requires_grad], lr=lr)
    n = min(batch_size, len(x))
    if probe_batch is not None:
        batch = probe_batch.map_images(prepare).labels_to(prepare.device)
    else:
        batch = Batch(images=prepare(x[:n]), labels=torch.arange(n) if labels is None else labels[:n].to(prepare.device))
    times = []
    for i in range(PROBE_STEPS + 1):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        probe.step(batch)["loss"].backward()
        opt.step()
        if i:
            times.append(time.perf_counter() - t0)
    torch.random.set_rng_state(state)
    step_s = float(np.median(times))
    steps = int(budget_s * BUDGET_SHARE / step_s)
    if steps >= steps_per_epoch:
        epochs = steps // steps_per_epoch
        return epochs, None, (f"--time-budget: {step_s * 1000:.0f} ms per step measured, so {epochs} pass(es) over the "
                              f"{len(x)} images ({epochs * steps_per_epoch} steps) fit")
    n = max(batch_size, steps * batch_size)
    return 1, n, (f"--time-budget: {step_s * 1000:.0f} ms per step measured, so one pass over {n} of the {len(x)} images "
                  f"(a seeded subset, {steps} steps) fits")

"""The optimisation recipe: phases, their parameter groups, optimizer and schedule.

A fine-tuning run is one or two phases — an optional head-only warm-up (``--warmup-epochs``),
then the strategy's phase with the first ``frozen`` stages frozen and the rest at the
discriminative rates of ``param_groups`` — and a linear probe on cached features is one phase
over the head alone. Each phase has its own AdamW and a warm-up + cosine schedule. ``engine``
executes them (``engine.phases.run_phases``); benchmarks import this recipe rather than
copying it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn

from ..backbones import Backbone
from ..methods.base import TrainingMethod
from .strategies import param_groups


def cosine_schedule(*, total_steps: int, warmup_steps: int) -> np.ndarray:
    """Per-step learning-rate multipliers: linear warm-up then cosine decay to 1 % (precomputed,
    so the schedule can be inspected and resumed by index)."""
    total_steps = max(1, total_steps)
    warmup_steps = min(warmup_steps, total_steps - 1) if total_steps > 1 else 0
    steps = np.arange(total_steps, dtype=np.float64)
    warm = (steps + 1) / max(1, warmup_steps)
    progress = (steps - warmup_steps) / max(1, total_steps - warmup_steps)
    cos = 0.01 + 0.99 * 0.5 * (1 + np.cos(np.pi * np.clip(progress, 0, 1)))
    return np.where(steps < warmup_steps, warm, cos)


def phase_schedule(epochs: int, steps_per_epoch: int) -> np.ndarray:
    """A phase's schedule: warm-up over the first epoch or 10 % of the steps, whichever is
    shorter, then cosine decay."""
    total = epochs * steps_per_epoch
    return cosine_schedule(total_steps=total, warmup_steps=min(steps_per_epoch, total // 10))


def make_optimizer(groups: list[dict]) -> torch.optim.Optimizer:
    """AdamW over the groups (each carries its own rate and weight decay)."""
    return torch.optim.AdamW(groups, lr=groups[0]["lr"])


@dataclass
class Phase:
    """One phase: ``tag`` names it in logs and checkpoints; ``groups`` builds its parameter
    groups once ``freeze`` (if any) has set what trains."""

    tag: str
    epochs: int
    groups: Callable[[], list[dict]]
    freeze: Callable[[], None] | None = None
    lr: float = 1e-3
    weight_decay: float = 0.0

    def begin(self, method: TrainingMethod, steps_per_epoch: int) -> tuple[torch.optim.Optimizer, np.ndarray]:
        if self.freeze is not None:
            self.freeze()
        groups = self.groups() + method.param_groups(self.lr, self.weight_decay)
        return make_optimizer(groups), phase_schedule(self.epochs, steps_per_epoch)


def fine_tune_phases(
    model: Backbone,
    *,
    frozen: int,
    epochs: int,
    lr: float,
    warmup_epochs: int = 0,
    backbone_lr_mult: float,
    stage_lr_decay: float = 1.0,
    weight_decay: float = 0.05,
) -> list[Phase]:
    """Optional head-only warm-up (when some stage will train), then the first ``frozen``
    stages frozen and the rest training at discriminative rates."""
    phases = []
    if warmup_epochs > 0 and frozen < model.num_stages:
        phases.append(
            Phase(
                "warmup", warmup_epochs, lambda: param_groups(model, lr=lr, weight_decay=weight_decay),
                freeze=lambda: model.freeze(model.num_stages), lr=lr, weight_decay=weight_decay,
            )
        )
    phases.append(
        Phase(
            "train", epochs,
            lambda: param_groups(model, lr=lr, backbone_lr_mult=backbone_lr_mult, stage_lr_decay=stage_lr_decay, weight_decay=weight_decay),
            freeze=lambda: model.freeze(frozen), lr=lr, weight_decay=weight_decay,
        )
    )
    return phases


def probe_module(model: Backbone) -> nn.Module:
    """What a linear probe on cached features trains: dropout and the head."""
    return nn.Sequential(model.drop, model.head)


def probe_phases(model: Backbone, *, epochs: int, lr: float, weight_decay: float) -> list[Phase]:
    """The linear probe: one phase over the head alone (features come from the cache)."""
    return [
        Phase(
            "linear", epochs,
            lambda: [{"name": "head", "params": list(model.head.parameters()), "lr": lr, "weight_decay": weight_decay}],
            lr=lr, weight_decay=weight_decay,
        )
    ]

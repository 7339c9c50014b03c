"""Running a recipe's phases one after another (e.g. a head-only warm-up, then fine-tuning).

The phases come from ``finetune`` (what is frozen, the optimizer and its schedule); this module
only executes them through ``fit`` and carries resume across them: a run resumed inside a later
phase skips the phases its checkpoint shows were finished and continues that phase's history.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Iterable, Protocol, Sequence

import numpy as np
import torch

from ..errors import RunError
from ..methods.base import TrainingMethod
from .loop import Context, fit


class Phase(Protocol):
    tag: str
    epochs: int

    def begin(self, method: TrainingMethod, steps_per_epoch: int) -> tuple[torch.optim.Optimizer, np.ndarray]:
        """Set the model up for this phase (freezing); its optimizer and per-step learning-rate
        multipliers."""
        ...


@dataclass
class PhasesResult:
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    interrupted: bool = False
    seconds: float = 0.0
    stopped_at: int | None = None


def run_phases(
    phases: Sequence[Phase], method: TrainingMethod, train: Any, val: Iterable | None, context: Context
) -> PhasesResult:
    """Train ``method`` through ``phases`` in order; each phase's epochs are numbered after the
    earlier ones'. ``context.resume`` (a checkpoint of one of the phases) continues that phase."""
    resume = context.resume
    tags = [p.tag for p in phases]
    start = 0
    out = PhasesResult()
    if resume is not None:
        if resume.get("tag") not in tags:
            raise RunError(f"the checkpoint belongs to a phase {resume.get('tag')!r} this run does not have ({', '.join(tags)}); train again")
        start = tags.index(resume["tag"])
        out.history = list((resume.get("info") or {}).get("prior_history", []))
    offset = sum(p.epochs for p in phases[:start])
    for i, phase in enumerate(phases[start:], start):
        optimizer, mults = phase.begin(method, len(train))
        ctx = dataclasses.replace(
            context, tag=phase.tag, epoch_offset=offset, resume=resume if i == start else None,
            phase_info={"prior_history": list(out.history)},
        )
        fr = fit(method, train, val, epochs=phase.epochs, optimizer=optimizer, lr_multipliers=mults, context=ctx)
        out.history += fr.history
        out.best_epoch, out.seconds = fr.best_epoch, out.seconds + fr.seconds
        offset += phase.epochs
        if fr.interrupted:
            out.interrupted = True
            break
        if fr.stopped_at is not None:
            out.stopped_at = fr.stopped_at
            break
    return out

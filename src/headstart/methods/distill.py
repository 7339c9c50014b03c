"""Knowledge distillation (seeds 001, 003; Hinton et al., 2015): a teacher's softened outputs
train a student.

The loss of a step is ``alpha · T² · KL(teacher_T ‖ student_T) + (1 − alpha) · CE(student,
labels)``, where ``x_T = softmax(logits / T)``: at temperature T the teacher's small
probabilities (which wrong classes look alike) carry signal, and T² keeps the soft term's
gradients on the scale of the hard one's as T changes. The KL term is averaged over every image
of the batch, labeled and unlabeled; the cross-entropy over the labeled ones only.

The teacher (``--teacher RUN``: any run, an ensemble included) sees **the same augmented view**
as the student (consistent teaching, Beyer et al., 2022): it is run on each batch as drawn. With
``-O cached_teacher=true`` the unlabeled images are taught instead by the teacher's table of
probabilities computed once on the plain images (``--teacher`` tables, as the pseudo-label
student reads them), and the labeled images by its table of the plain labeled images: one
teacher pass over the pool and the labeled images instead of one per drawn view, and no teacher
forward at all while the student trains (for a teacher of three Lite0 runs at 112 px, its
forward on the labeled quarter of each batch cost ~4× the small student's whole step).

The teacher reaches the method as ``Setup.teacher``: a module from the student's prepared input
to the teacher's logits (or log-probabilities, for an ensemble), in the student's class order;
``api_distill`` builds it. Its weights never train and DDP never wraps it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .base import Batch, Needs, TrainingMethod
from .registry import METHODS

VIEWS = ("plain", "weak", "strong")


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``T² · KL(softmax(teacher / T) ‖ softmax(student / T))``, averaged over the images."""
    t = temperature
    log_s = F.log_softmax(student_logits.float() / t, dim=1)
    log_p = F.log_softmax(teacher_logits.float() / t, dim=1)
    return F.kl_div(log_s, log_p, reduction="batchmean", log_target=True) * (t * t)


def _opt(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class DistillOptions:
    temperature: float = _opt(4.0, "T: both distributions are softened as softmax(logits / T); the soft loss is scaled by T²")
    alpha: float = _opt(0.9, "weight of the teacher's soft targets against the labels' cross-entropy (1 − alpha)")
    ratio: int = _opt(0, "unlabeled images per labeled image in a batch (0: none; `headstart distill --unlabeled` sets 3)")
    view: str = _opt("weak", "how teacher and student see an unlabeled image: plain | weak | strong (RandAugment)")
    cached_teacher: bool = _opt(False, "teach from the teacher's tables of the plain unlabeled and labeled images (one pass over "
                                       "each) instead of running it on every drawn view")

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise ValueError(f"temperature must be positive, got {self.temperature}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha}")
        if self.ratio < 0:
            raise ValueError(f"ratio must be 0 or more, got {self.ratio}")
        if self.view not in VIEWS:
            raise ValueError(f"view must be one of {', '.join(VIEWS)}, got {self.view!r}")


@METHODS.register("distill")
class Distill(TrainingMethod):
    """A teacher's softened outputs (temperature T) train the student, with the labels: alpha·T²·KL + (1−alpha)·CE.

    See the module docstring for the loss, consistent teaching and ``cached_teacher``.
    """

    Options = DistillOptions
    needs = Needs(cached_features=False)

    @classmethod
    def needs_for(cls, options: Any) -> Needs:
        # the teacher reads the pixels of each batch, so cached features cannot stand in for them
        if options.ratio <= 0:
            return Needs(cached_features=False)
        return Needs(unlabeled_views=(options.view,), unlabeled_ratio=options.ratio, cached_features=False)

    def __init__(self, model: nn.Module, options: Any = None, setup: Any = None) -> None:
        super().__init__(model, options, setup)
        self.teacher = self.setup.teacher
        if self.teacher is None:
            raise ValueError("--method distill needs a teacher: --teacher RUN (or `headstart distill TEACHER_RUN`)")
        if self.options.cached_teacher and self.options.ratio > 0 and (self.setup.pool_targets is None or self.setup.labeled_targets is None):
            raise ValueError("cached_teacher reads the teacher's tables of the unlabeled and the labeled images, and none was made "
                             "(give --unlabeled)")
        self.teacher.eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)

    def _teach(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.teacher(x).float()

    def step(self, batch: Batch) -> dict[str, torch.Tensor]:
        o = self.options
        x_l, y_l = batch.images, batch.labels
        u = batch.views.get(f"unlabeled_{o.view}") if o.ratio > 0 else None
        inputs = x_l if u is None else torch.cat([x_l, u])
        logits = self.net(inputs).float()
        s_l = logits[: len(x_l)]
        if u is not None and o.cached_teacher:
            pool = self.setup.pool_targets.to(logits.device)[batch.extras["unlabeled_index"]]
            labeled = self.setup.labeled_targets.to(logits.device)[batch.extras["labeled_index"]]
            teacher = torch.cat([labeled, pool]).clamp_min(1e-8).log()
        else:
            teacher = self._teach(inputs)
        soft = kd_loss(logits, teacher, o.temperature)
        hard = F.cross_entropy(s_l, y_l, label_smoothing=self.setup.label_smoothing)
        out = {"loss": o.alpha * soft + (1.0 - o.alpha) * hard, "kd": soft.detach(), "ce": hard.detach()}
        hard_y = y_l if y_l.ndim == 1 else y_l.argmax(1)
        out["acc"] = (s_l.detach().argmax(1) == hard_y).float().mean()
        out["agree"] = (logits.detach().argmax(1) == teacher.argmax(1)).float().mean()  # student and teacher on the same views
        return out

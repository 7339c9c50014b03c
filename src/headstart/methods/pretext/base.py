"""The pretext-task protocol: a training method that needs no labels, only images.

A pretext task makes its own targets from the images (which way an image was rotated, which
two crops come from the same image, where one patch lies relative to another, what the image
was before it was corrupted) and trains the backbone's body to solve it, so that the body
learns features from unlabeled images. It is a :class:`~headstart.methods.base.TrainingMethod`
and runs in the same loop (checkpoints, exact resume, DDP, ``--time-budget``); the loop never
knows it is one.

Each task builds ``self.module``, one ``nn.Module`` holding the backbone as ``body`` and the
task's own head as ``head`` (a rotation classifier, a projection MLP, a decoder), whose
``forward`` does all of the task's network computation: DDP wraps ``trainable()`` and so must
see one forward call per step. ``step`` makes the task's inputs and targets from the prepared
images with torch's global random generator (saved in every checkpoint, so a resumed run draws
the same crops); ``eval_step`` draws from a local generator seeded with :data:`EVAL_SEED` at every
call, so the validation score of an epoch depends on the weights only and two epochs compare.

Tasks are registered in :data:`PRETEXTS` (``headstart pretrain --method NAME``), never in
``METHODS``: they train a body, not a classifier.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ...backbones.base import Backbone
from ...registry import Registry
from ..base import Batch, Needs, Setup, TrainingMethod, build_options

PRETEXTS: Registry[type] = Registry("pretext task")

EVAL_SEED = 0
"""The seed of the local generator every ``eval_step`` call draws from: the same rotations,
crops, patches and noise for a validation image at every epoch."""


def eval_generator(device: torch.device) -> torch.Generator:
    """A fresh generator on ``device`` seeded with :data:`EVAL_SEED`: validation draws its
    randomness from it and leaves the global generators (which a checkpoint saves to make a
    resumed run exact) untouched."""
    return torch.Generator(device=device).manual_seed(EVAL_SEED)


class PretextNet(nn.Module):
    """The backbone (``body``) and a task's head (``head``); a task's subclass defines
    ``forward``, the whole network computation of one step."""

    def __init__(self, body: Backbone, head: nn.Module) -> None:
        super().__init__()
        self.body = body
        self.head = head

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled body features (N, body.num_features)."""
        return self.body.pool(self.body.forward_stages(x))


class PretextTask(TrainingMethod):
    """Base of every pretext task: the mechanics are here, a task overrides ``build``,
    ``step``, ``eval_step`` and ``score``.

    ``model`` is a :class:`~headstart.backbones.Backbone` used as it is, frozen stages included
    (``Backbone.freeze`` keeps them without gradients and their BatchNorm in inference mode).
    Its classifier head takes no part in any pretext task, so it is set not to train: DDP
    requires every trainable parameter to receive a gradient at each step.
    """

    needs = Needs(labels=False, cached_features=False)

    def __init__(self, model: Backbone, options: Any = None, setup: Setup | None = None) -> None:
        super().__init__(model, options, setup)
        if isinstance(getattr(model, "head", None), nn.Module):
            model.head.requires_grad_(False)
        self.module: PretextNet = self.build(model)
        self.net = self.module

    def build(self, body: Backbone) -> PretextNet:
        """The task's network: ``body`` and the task's head."""
        raise NotImplementedError

    def trainable(self) -> nn.Module:
        return self.module

    def eval_module(self) -> nn.Module:
        return self.module

    def head_module(self) -> nn.Module:
        """The task's head alone, saved apart from the body (a body folder keeps it so the task
        can be continued or inspected; a classifier never loads it)."""
        return self.module.head

    def finish(self) -> None:
        """Nothing to copy: the module trained is the one validated and kept."""

    def step(self, batch: Batch) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def eval_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def score(self, sums: dict[str, float]) -> dict[str, float]:
        """The share of correct task predictions and the mean loss; the accuracy comes first
        (higher is better), so the best epoch is the one that did the task best."""
        n = max(1.0, sums["count"])
        return {"val_pretext_acc": sums["correct"] / n, "val_loss": sums["loss"] / n}


def create_pretext(name: str, model: Backbone, options: dict[str, Any] | None = None, setup: Setup | None = None) -> PretextTask:
    """The registered pretext task ``name`` training ``model``, with its options from
    ``options`` (strings from ``-O key=value`` are converted to each field's type)."""
    cls = PRETEXTS.get(name)
    return cls(model, build_options(cls, name, options), setup or Setup(num_classes=0))

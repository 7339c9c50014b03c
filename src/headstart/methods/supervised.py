"""Supervised training: cross-entropy on the labels."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .base import Batch, TrainingMethod
from .registry import METHODS


@dataclass(frozen=True)
class SupervisedOptions:
    ema_decay: float = field(
        default=0.0,
        metadata={"help": "keep an exponential moving average of the weights (timm's ModelEmaV3) with this decay, e.g. 0.999, "
                          "and validate and save it; 0 = off"},
    )

    def __post_init__(self) -> None:
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")


@METHODS.register("supervised")
class Supervised(TrainingMethod):
    """Cross-entropy on the labels, with the run's label smoothing and CutMix/MixUp.

    Smoothing (``--label-smoothing``, 0.1 by default) keeps a head trained on a few hundred
    images from driving its logits to extremes on them, which otherwise makes its probabilities
    overconfident on new images.

    With a mix (``--cutmix``/``--mixup``, ``augment.BatchMix``) each training batch is mixed
    first and the loss takes the mixed labels as soft targets; the training accuracy counts
    agreement of the mixed images' predictions with each image's own label.

    With ``-O ema_decay=0.999`` an EMA copy of the weights (timm's ``ModelEmaV3``, updated after
    every optimizer step) is what is validated, kept at the best epoch and saved.
    """

    Options = SupervisedOptions

    def __init__(self, model: nn.Module, options: Any = None, setup: Any = None) -> None:
        super().__init__(model, options, setup)
        self.ema = None
        if self.options.ema_decay > 0:
            from timm.utils import ModelEmaV3

            self.ema = ModelEmaV3(model, decay=self.options.ema_decay)

    def after_step(self, step: int) -> None:
        if self.ema is not None:
            self.ema.update(self.model, step=step)

    def eval_module(self) -> nn.Module:
        return self.model if self.ema is None else self.ema.module

    def state_dict(self) -> dict[str, Any]:
        return {} if self.ema is None else {"ema": self.ema.module.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if (self.ema is None) != (not state):
            raise ValueError("the checkpoint's EMA state does not match -O ema_decay; resume with the run's own options")
        if self.ema is not None:
            self.ema.module.load_state_dict(state["ema"])

    def step(self, batch: Batch) -> dict[str, torch.Tensor]:
        inputs, targets = batch.images, batch.labels
        soft = targets
        if self.setup.mix is not None and self.net.training:
            inputs, soft = self.setup.mix(inputs, targets)
        logits = self.net(inputs)
        out = {"loss": F.cross_entropy(logits.float(), soft, label_smoothing=self.setup.label_smoothing)}
        hard = targets if targets.ndim == 1 else targets.argmax(1)
        out["acc"] = (logits.detach().argmax(1) == hard).float().mean()
        return out

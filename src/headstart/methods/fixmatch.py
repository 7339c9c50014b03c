"""FixMatch (Sohn et al., 2020): consistency between a weak and a strong view.

Each drawn unlabeled image is seen twice: a weak view (crop + flip) whose prediction, where
confident, becomes the target for a strong view (crop + flip + RandAugment under the run's
declared invariances) of the same image. Options beyond the paper's: per-class adaptive
thresholds (``thresholds=flexmatch`` or ``freematch``), soft targets, distribution alignment
(``align``), and an EMA teacher (``ema_decay``: the weak views are labelled by the EMA
weights, which are also validated and saved).

On CPU the default ratio is 2 unlabeled images per labeled one (the paper's μ = 7 makes every
step 15 × a labeled batch); raise it where the machine allows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ._pseudo import UnlabeledMethod, check_common, masked_mean, soft_cross_entropy
from .base import Batch, Needs, TrainingMethod
from .pseudolabel import _opt
from .registry import METHODS


@dataclass(frozen=True)
class FixMatchOptions:
    threshold: float = _opt(0.95, "confidence the weak view's prediction needs (τ; flexmatch/freematch scale it per class)")
    thresholds: str = _opt("fixed", "fixed | flexmatch | freematch (per-class adaptive thresholds)")
    targets: str = _opt("hard", "hard (the weak view's class) | soft (its distribution, sharpened by temperature)")
    temperature: float = _opt(1.0, "soft targets are sharpened as p^(1/T); 1 keeps them")
    weight: float = _opt(1.0, "weight of the consistency loss against the labeled one (λ)")
    ratio: int = _opt(2, "unlabeled images per labeled image in a batch (μ; the paper's 7 is slow on CPU)")
    ema_decay: float = _opt(0.0, "label the weak views with an EMA of the weights (timm's ModelEmaV3), validated and saved; 0 = off")
    align: bool = _opt(False, "distribution alignment of the weak predictions to the labeled class shares")

    def __post_init__(self) -> None:
        check_common(self)


@METHODS.register("fixmatch")
class FixMatch(UnlabeledMethod, TrainingMethod):
    """FixMatch: a weak view's confident prediction is the target of a strong view of the same unlabeled image.

    See the module docstring for the options beyond the paper.
    """

    Options = FixMatchOptions
    needs = Needs(unlabeled_views=("weak", "strong"), unlabeled_ratio=2, cached_features=False)

    @classmethod
    def needs_for(cls, options: Any) -> Needs:
        return Needs(unlabeled_views=("weak", "strong"), unlabeled_ratio=options.ratio, cached_features=False)

    def __init__(self, model: nn.Module, options: Any = None, setup: Any = None) -> None:
        super().__init__(model, options, setup)
        self._init_unlabeled()

    def step(self, batch: Batch) -> dict[str, torch.Tensor]:
        x_l, y_l = batch.images, batch.labels
        weak, strong = batch.views["unlabeled_weak"], batch.views["unlabeled_strong"]
        idx = batch.extras["unlabeled_index"]
        n_l, n_u = len(x_l), len(strong)
        if self.ema is None:  # one forward for all three, as the paper does
            logits = self.net(torch.cat([x_l, weak, strong]))
            l_logits, w_logits, s_logits = logits[:n_l], logits[n_l:n_l + n_u].detach(), logits[n_l + n_u:]
        else:
            logits = self.net(torch.cat([x_l, strong]))
            l_logits, s_logits = logits[:n_l], logits[n_l:]
            with torch.no_grad():
                w_logits = self.ema.module(weak)
        sup = F.cross_entropy(l_logits.float(), y_l, label_smoothing=self.setup.label_smoothing)
        targets, mask, pred = self.pseudo_targets(torch.softmax(w_logits.float(), 1), idx)
        unsup = masked_mean(soft_cross_entropy(s_logits, targets), mask)
        return self.step_result(sup, unsup, l_logits, y_l, mask, pred, idx)

"""Pseudo-labels: unlabeled images trained on the classes they are predicted to be.

Online (no ``--teacher``), as in Lee (2013): the model being trained (or its EMA copy, with
``-O ema_decay``) labels each drawn unlabeled image, and the images whose top probability
reaches the threshold — fixed, or per class in the FlexMatch or FreeMatch manner — join the
loss with their predicted class (``targets=hard``) or the predicted distribution
(``targets=soft``, sharpened by ``temperature``).

With ``--teacher RUN`` (or ``--teacher propagate``) the targets are a fixed table: the
teacher's class probabilities for every pool image, computed once before training — or, with
``table=graph``, the labels spread over a kNN graph of the teacher's own features (Iscen et al.,
2019), which a trained network's features make more right than its head. The
images kept are those whose teacher confidence reaches ``threshold``, at most the ``keep``
share of the pool (most confident first) and, with ``balance``, the same number per class
(Noisy Student's class-balanced selection, without duplicating images); with ``align`` the
table is first balanced so its class shares over the pool are the labeled images' (Sinkhorn;
``semi.teacher.balance_table``). Seen through the
``strong`` view, with the network's dropout and stochastic depth, this is the student of
Noisy Student (``headstart selftrain`` runs the rounds).

Every step's loss is the labeled cross-entropy plus ``weight`` × the mean over the drawn
unlabeled images of mask × cross-entropy to the target (masked images count in the mean, as
in FixMatch). Logged per epoch: ``mask`` (the share of drawn images kept), ``pseudo_acc``
(where hidden labels are known: how many kept pseudo-labels are right), the per-class
thresholds and, with a teacher or FlexMatch, the share of the pool covered.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ._pseudo import UnlabeledMethod, check_common, masked_mean, sharpen, soft_cross_entropy
from .base import Batch, Needs, TrainingMethod
from .registry import METHODS

VIEWS = ("plain", "weak", "strong")
TABLES = ("head", "graph")


def _opt(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class PseudoLabelOptions:
    threshold: float = _opt(0.95, "confidence a pseudo-label needs (τ; flexmatch/freematch scale it per class)")
    thresholds: str = _opt("fixed", "fixed | flexmatch | freematch (per-class adaptive; online only)")
    targets: str = _opt("hard", "hard (the predicted class) | soft (the predicted distribution)")
    temperature: float = _opt(1.0, "soft targets are sharpened as p^(1/T); 1 keeps them")
    weight: float = _opt(1.0, "weight of the unlabeled loss against the labeled one (λ)")
    ratio: int = _opt(3, "unlabeled images per labeled image in a batch (μ)")
    view: str = _opt("weak", "how the student sees an unlabeled image: plain | weak | strong (RandAugment)")
    keep: float = _opt(1.0, "with --teacher: at most this share of the pool, most confident first")
    balance: bool = _opt(False, "with --teacher: the same number of kept images per class (the teacher's classes)")
    ema_decay: float = _opt(0.0, "online: pseudo-labels from an EMA of the weights (timm's ModelEmaV3), which is also validated and "
                                 "saved; 0 = off")
    align: bool = _opt(False, "distribution alignment: online, predictions × labeled class shares / their running mean; with "
                              "--teacher, the table balanced once to the labeled class shares (Sinkhorn)")
    table: str = _opt("head", "with --teacher RUN: head (the teacher's predictions) | graph (the labels spread over a kNN graph of "
                              "the teacher's own features)")

    def __post_init__(self) -> None:
        check_common(self)
        if self.table not in TABLES:
            raise ValueError(f"table must be one of {', '.join(TABLES)}, got {self.table!r}")
        if self.view not in VIEWS:
            raise ValueError(f"view must be one of {', '.join(VIEWS)}, got {self.view!r}")
        if not 0.0 < self.keep <= 1.0:
            raise ValueError(f"keep must be in (0, 1], got {self.keep}")


def select(table: torch.Tensor, threshold: float, keep: float, balance: bool) -> torch.Tensor:
    """Which pool images a teacher's table lets train: top probability ≥ ``threshold``; at most
    ``keep`` × P of them, most confident first; with ``balance`` at most ``keep`` × P / C per
    (predicted) class, each class's most confident. Boolean ``(P,)``."""
    conf, pred = table.max(1)
    n, classes = len(table), table.shape[1]
    eligible = conf >= threshold
    chosen = torch.zeros(n, dtype=torch.bool)
    order = torch.argsort(conf, descending=True, stable=True)
    if balance:
        quota = max(1, int(round(keep * n / classes)))
        for c in range(classes):
            in_c = order[(pred[order] == c) & eligible[order]]
            chosen[in_c[:quota]] = True
    else:
        ranked = order[eligible[order]]
        chosen[ranked[: max(1, int(round(keep * n)))]] = True
    return chosen


@METHODS.register("pseudolabel")
class PseudoLabel(UnlabeledMethod, TrainingMethod):
    """Confident predictions on unlabeled images train as their targets: the model's own, or a --teacher's fixed table.

    Online as in Lee (2013), with fixed or FlexMatch/FreeMatch thresholds; with ``--teacher`` and
    ``view=strong``, ``targets=soft`` it is Noisy Student's student. See the module docstring for
    the loss and what is logged.
    """

    Options = PseudoLabelOptions

    @classmethod
    def needs_for(cls, options: Any) -> Needs:
        return Needs(unlabeled_views=(options.view,), unlabeled_ratio=options.ratio, cached_features=options.view == "plain")

    needs = Needs(unlabeled_views=("weak",), unlabeled_ratio=3, cached_features=False)

    def __init__(self, model: nn.Module, options: Any = None, setup: Any = None) -> None:
        super().__init__(model, options, setup)
        self._init_unlabeled()
        o, table = self.options, self.setup.pool_targets
        self.table = None if table is None else table.float()
        self.selected = None
        if self.table is not None:
            if o.thresholds != "fixed" or o.ema_decay:  # align balanced the table once, before training
                raise ValueError("with --teacher the targets are fixed: thresholds=flexmatch/freematch and ema_decay are "
                                 "for the online method (drop --teacher or those options)")
            self.selected = select(self.table, o.threshold, o.keep, o.balance)
        elif o.table != "head":
            raise ValueError("table=graph spreads the labels over a --teacher run's own features: give --teacher RUN (or drop -O table)")

    def step(self, batch: Batch) -> dict[str, torch.Tensor]:
        o = self.options
        x_l, y_l = batch.images, batch.labels
        u = batch.views[f"unlabeled_{o.view}"]
        idx = batch.extras["unlabeled_index"]
        logits = self.net(torch.cat([x_l, u]))
        l_logits, u_logits = logits[: len(x_l)], logits[len(x_l):]
        sup = F.cross_entropy(l_logits.float(), y_l, label_smoothing=self.setup.label_smoothing)
        if self.table is not None:
            probs = self.table.to(u_logits.device)[idx]
            mask = self.selected.to(u_logits.device)[idx].float()
            pred = probs.argmax(1)
            targets = F.one_hot(pred, probs.shape[1]).float() if o.targets == "hard" else sharpen(probs, o.temperature)
        else:
            with torch.no_grad():
                teacher = u_logits.detach() if self.ema is None else self.ema.module(u)
            targets, mask, pred = self.pseudo_targets(torch.softmax(teacher.float(), 1), idx)
        unsup = masked_mean(soft_cross_entropy(u_logits, targets), mask)
        return self.step_result(sup, unsup, l_logits, y_l, mask, pred, idx)

    def epoch_info(self) -> dict[str, Any]:
        if self.selected is None:
            return super().epoch_info()
        return {**self.pool_counts_info(), "pool_coverage": float(self.selected.float().mean())}

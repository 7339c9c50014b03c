"""Cheap measurements of a labeled image set against a backbone, for the strategy advisor.

Everything here is a function of tensors and a model; nothing trains a network. One forward
pass per network collects, for every stage, the globally pooled features (for the stage-wise
probe) and, for every BatchNorm layer, the mean and variance of its input (for the distance to
the layer's ImageNet running statistics).

- **Stage-wise probe**: cross-validated logistic-regression accuracy on each stage's pooled
  features: where the curve stops rising is where transferable features stop.
- **Pretrained vs random init**: the same probe on the same architecture with random weights
  (BatchNorm normalising with batch statistics, since a random network has no meaningful running
  statistics): how much the pretraining is worth on these images.
- **BatchNorm statistics distance**: per layer, the KL divergence between a Gaussian with the
  data's per-channel mean and variance and one with the running statistics the weights expect,
  averaged over channels. Zero when the images look like the pretraining data to that layer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn

from ..backbones import Backbone

Prepare = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class SizeStats:
    """How many labeled images each class has."""

    counts: list[int]
    classes: list[str]

    @property
    def total(self) -> int:
        return int(sum(self.counts))

    @property
    def min(self) -> int:
        return int(min(self.counts))

    @property
    def median(self) -> float:
        return float(np.median(self.counts))

    @property
    def imbalance(self) -> float:
        """Largest class over smallest (1 = balanced)."""
        return float(max(self.counts) / max(1, min(self.counts)))

    def to_dict(self) -> dict:
        return {
            "total": self.total, "min_per_class": self.min, "median_per_class": self.median,
            "imbalance": self.imbalance, "per_class": dict(zip(self.classes, self.counts)),
        }


def size_stats(labels: np.ndarray, classes: list[str]) -> SizeStats:
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(classes))
    return SizeStats(counts=[int(c) for c in counts], classes=list(classes))


class _BatchNormInputStats:
    """Forward pre-hooks summing each BatchNorm2d input's per-channel mean and square; removed
    on exit so the model is left as it was."""

    def __init__(self, model: nn.Module) -> None:
        self.layers = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)]
        self.sums: dict[str, torch.Tensor] = {}
        self.squares: dict[str, torch.Tensor] = {}
        self.count: dict[str, int] = {}
        self.handles: list = []

    def __enter__(self) -> "_BatchNormInputStats":
        for name, module in self.layers:
            self.handles.append(module.register_forward_pre_hook(self._hook(name)))
        return self

    def _hook(self, name: str):
        def hook(module: nn.Module, inputs: tuple) -> None:
            x = inputs[0].detach().float()
            self.sums[name] = self.sums.get(name, 0) + x.sum(dim=(0, 2, 3)).double()
            self.squares[name] = self.squares.get(name, 0) + (x * x).sum(dim=(0, 2, 3)).double()
            self.count[name] = self.count.get(name, 0) + x.shape[0] * x.shape[2] * x.shape[3]

        return hook

    def __exit__(self, *exc) -> None:
        for h in self.handles:
            h.remove()
        self.handles.clear()

    def kl_per_layer(self) -> list[tuple[str, float]]:
        """Mean over channels of KL(N(data mean, data var) || N(running mean, running var))."""
        out = []
        for name, module in self.layers:
            if name not in self.count or module.running_mean is None:
                continue
            n = self.count[name]
            mean = self.sums[name] / n
            var = (self.squares[name] / n - mean * mean).clamp_min(1e-8)
            run_mean = module.running_mean.detach().double().cpu()
            run_var = module.running_var.detach().double().cpu() + module.eps
            ratio = var.cpu() / run_var
            kl = 0.5 * (ratio + (mean.cpu() - run_mean) ** 2 / run_var - 1 - torch.log(ratio))
            out.append((name, float(kl.mean())))
        return out


@torch.no_grad()
def stage_pass(
    model: Backbone, images: torch.Tensor, prepare: Prepare, *, batch_size: int = 64, batch_stats: bool = False
) -> tuple[list[np.ndarray], list[tuple[str, float]]]:
    """Pooled features of every stage (one array (N, C_s) per stage) and the BatchNorm KL per
    layer, from one pass over ``images`` (uint8, N×3×H×W).

    ``batch_stats`` normalises BatchNorm layers with each batch's own statistics (for randomly
    initialised networks, whose running statistics are placeholders); no state is changed.
    """
    was_training = model.training
    model.eval()
    saved: list[tuple[nn.Module, float | None, torch.Tensor | None]] = []
    if batch_stats:
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                tracked = None if m.num_batches_tracked is None else m.num_batches_tracked.clone()
                saved.append((m, m.momentum, tracked))
                m.momentum = 0.0  # batch statistics are used, running ones stay untouched
                m.train()
    per_stage: list[list[np.ndarray]] = [[] for _ in range(model.num_stages)]
    try:
        with _BatchNormInputStats(model.stages) as bn:
            for lo in range(0, len(images), batch_size):
                x = prepare(images[lo : lo + batch_size])
                for i, stage in enumerate(model.stages):
                    x = stage(x)
                    per_stage[i].append(model.pool(x).float().cpu().numpy())
        kl = [] if batch_stats else bn.kl_per_layer()
    finally:
        for m, momentum, tracked in saved:
            m.momentum = momentum
            if tracked is not None:
                m.num_batches_tracked.copy_(tracked)
        model.train(was_training)
    return [np.concatenate(parts) for parts in per_stage], kl


def probe_accuracy(features: np.ndarray, labels: np.ndarray, *, seed: int = 0, max_folds: int = 5) -> float | None:
    """Cross-validated accuracy of a linear probe (standardised features, multinomial logistic
    regression) — or ``None`` when a class has fewer than 2 images, so no fold can test it.

    Folds: as many as the smallest class allows, 2 to ``max_folds``. Regularisation is
    scikit-learn's default (C=1) on standardised features: a neutral setting that ranks stages
    the same way a tuned one does, at a fraction of the cost.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.preprocessing import StandardScaler

    labels = np.asarray(labels)
    folds = min(max_folds, int(np.bincount(labels).min()) if len(labels) else 0)
    if folds < 2 or len(np.unique(labels)) < 2:
        return None
    correct = 0
    for tr, te in StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(features, labels):
        scaler = StandardScaler().fit(features[tr])
        clf = LogisticRegression(max_iter=300, tol=1e-3).fit(scaler.transform(features[tr]), labels[tr])
        correct += int((clf.predict(scaler.transform(features[te])) == labels[te]).sum())
    return correct / len(labels)


def subsample(labels: np.ndarray, limit: int, seed: int) -> np.ndarray:
    """At most ``limit`` indices, the same share of every class (all of them when under)."""
    labels = np.asarray(labels)
    if len(labels) <= limit:
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    keep = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        n = max(2, int(math.floor(len(idx) * limit / len(labels))))
        keep.append(rng.choice(idx, size=min(n, len(idx)), replace=False))
    return np.sort(np.concatenate(keep))

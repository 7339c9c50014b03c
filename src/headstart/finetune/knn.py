"""The memorisation baseline as a head: k nearest training images by cosine similarity.

Seed 001 frames classification as search: with every image memorised, a query is answered by
its neighbours. Stored as buffers, the bank travels in ``model.safetensors`` like any weights.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from . import rules


class KNNHead(nn.Module):
    """Majority vote of the ``k`` most similar training features.

    Each neighbour votes 1 plus a tie-breaker of 0.001 × its cosine similarity, so ties go to
    the class whose neighbours are closer. ``forward`` returns log vote shares, so a softmax
    over them gives back the vote shares as probabilities.
    """

    def __init__(self, bank: torch.Tensor, labels: torch.Tensor, num_classes: int, k: int) -> None:
        super().__init__()
        self.register_buffer("bank", F.normalize(bank.float(), dim=1))
        self.register_buffer("labels", labels.long())
        self.num_classes = num_classes
        self.k = int(k)

    def votes(self, features: torch.Tensor) -> torch.Tensor:
        with torch.autocast(features.device.type, enabled=False):  # exact votes, in float32
            sims = F.normalize(features.float(), dim=1) @ self.bank.float().T
        k = min(self.k, self.bank.shape[0])
        top, idx = sims.topk(k, dim=1)
        weights = 1.0 + 1e-3 * top.float()
        out = torch.zeros(features.shape[0], self.num_classes, device=features.device)
        out.scatter_add_(1, self.labels[idx], weights)
        return out / out.sum(1, keepdim=True)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.votes(features).clamp_min(1e-6).log()


def choose_k(
    feats: torch.Tensor,
    labels: torch.Tensor,
    val_feats: tuple[torch.Tensor, torch.Tensor] | None,
    num_classes: int,
    k_given: int | None,
    min_count: int,
) -> tuple[int, dict[str, Any]]:
    """k for the kNN baseline: as given, else the best on validation, else 1 if classes are
    tiny (with 1-10 images per class, more neighbours mostly add votes from other classes)."""
    if k_given:
        return k_given, {"k_reason": f"k={k_given} as given"}
    candidates = rules.knn_k_candidates(min_class_count=min_count)
    if val_feats is None:
        k = min(5, candidates[-1])
        return k, {"k_reason": f"k={k}: no validation split to choose on; at most 5 and no more than the smallest class"}
    scores = {}
    for k in candidates:
        head = KNNHead(feats, labels, num_classes, k)
        scores[k] = float((head.votes(val_feats[0]).argmax(1) == val_feats[1]).float().mean())
    best = max(candidates, key=lambda k: (scores[k], -k))
    return best, {"k_reason": f"k={best}: best validation accuracy among {scores}", "knn_val_scores": scores}

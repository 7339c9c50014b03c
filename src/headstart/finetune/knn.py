"""The memorisation baseline as a head: k nearest training images by cosine similarity.

Seed 001 frames classification as search: with every image memorised, a query is answered by
its neighbours. Stored as buffers, the bank travels in ``model.safetensors`` like any weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


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

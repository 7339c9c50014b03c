"""An ensemble as one ``nn.Module``: uint8 images in, the combined log-probabilities out.

Every member keeps its own input preparation (its normalisation and input size: a 64-px Lite0
and a 112-px Lite2 can sit in one ensemble), so the module takes the images as stored pixels and
prepares them once per member. It returns log-probabilities, so everything that reads a
classifier's logits (``predict``, ``eval``, TTA, a student's teacher) reads an ensemble's
unchanged: the softmax of log p is p. The combination is the torch transcription of the numpy
rules in ``rules.py`` (tests hold the two equal).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn

from ..backbones import Preprocess, normalize_resize
from .rules import LOG_FLOOR, RULES, TIE_BREAK


class MemberInput(nn.Module):
    """One member's preparation of uint8 pixels (as ``engine.Prepare``, on the module's device)."""

    def __init__(self, preprocess: Preprocess, image_size: int) -> None:
        super().__init__()
        self.image_size = int(image_size)
        self.mode = "bicubic" if preprocess.interpolation == "bicubic" else "bilinear"
        self.register_buffer("mean", torch.tensor(preprocess.mean).view(1, 3, 1, 1) * 255, persistent=False)
        self.register_buffer("std", torch.tensor(preprocess.std).view(1, 3, 1, 1) * 255, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return normalize_resize(x, self.mean, self.std, self.image_size, self.mode)


class EnsembleModel(nn.Module):
    """Members (classifier modules over the same classes), their inputs, and a rule with its
    fitted parameters (``weights``, or the stacking layer's ``coef``/``intercept``; and the
    ``temperature`` of a calibrated ensemble)."""

    def __init__(self, members: Sequence[nn.Module], inputs: Sequence[MemberInput], rule: str, params: dict[str, np.ndarray]) -> None:
        super().__init__()
        if rule not in RULES:
            RULES.get(rule)  # raises with the known names
        self.members = nn.ModuleList(members)
        self.inputs = nn.ModuleList(inputs)
        self.rule = rule
        for key, value in params.items():
            self.register_buffer(key, torch.as_tensor(np.asarray(value), dtype=torch.float32))

    def member_probs(self, x: torch.Tensor) -> torch.Tensor:
        """(M, N, C): every member's probabilities for uint8 (N, 3, H, W) images."""
        return torch.stack([m(prep(x)).float().softmax(1) for m, prep in zip(self.members, self.inputs)])

    def combine(self, probs: torch.Tensor) -> torch.Tensor:
        """(M, N, C) member probabilities → (N, C) combined probabilities, temperature-scaled
        when the ensemble was calibrated (``calibrate.apply_temperature``)."""
        p = self._rule(probs)
        t = getattr(self, "temperature", None)
        if t is None or float(t.reshape(-1)[0]) == 1.0:
            return p
        return (p.double().clamp_min(LOG_FLOOR).log() / t.reshape(()).double()).softmax(1).to(p.dtype)

    def _rule(self, probs: torch.Tensor) -> torch.Tensor:
        if self.rule == "stack":
            m, n, c = probs.shape
            feats = probs.clamp_min(LOG_FLOOR).log().permute(1, 0, 2).reshape(n, m * c)
            return (feats @ self.coef.T + self.intercept).softmax(1)
        w = self.weights / self.weights.sum()
        soft = torch.einsum("m,mnc->nc", w, probs)
        if self.rule != "hard":
            return soft
        # in float64: the tie-break adds 1e-6 × the mean probability to vote shares near 1/M, and
        # float32 (7 digits) would round the difference between two tied classes away
        soft, w = soft.double(), w.double()
        top = probs.argmax(2)  # (M, N)
        votes = torch.zeros_like(soft)
        for i in range(len(probs)):
            votes.scatter_add_(1, top[i].unsqueeze(1), w[i].expand(len(soft), 1).to(votes.dtype))
        votes = votes + TIE_BREAK * soft
        return (votes / votes.sum(1, keepdim=True)).to(probs.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.combine(self.member_probs(x)).clamp_min(1e-30).log()

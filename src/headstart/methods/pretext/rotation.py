"""Rotation prediction (Gidaris, Singh & Komodakis 2018, "Unsupervised representation learning
by predicting image rotations"): which of 0, 90, 180, 270 degrees an image was turned by.

To tell an upright dog from an upside-down one the body must find the dog and know where its
head and feet go, so features that recognise objects solve the task; low-level statistics do
not change under a quarter turn (a square image's histogram, its edge content) and cannot.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ...backbones.base import Backbone
from ..base import Batch
from .base import PRETEXTS, PretextNet, PretextTask

ROTATIONS = 4
"""Quarter turns: 0, 90, 180 and 270 degrees, labels 0..3 (Gidaris et al. found 4 better than
2 or 8: 45-degree turns leave black corners that give the answer away)."""


def rotation_batch(x: torch.Tensor, all_rotations: bool = True, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The rotated images and their labels (the number of quarter turns, counter-clockwise as
    ``torch.rot90``/``np.rot90`` turn from the height axis towards the width axis).

    With ``all_rotations`` every image comes 4 times, blocks in label order: images ``k·N ..
    (k+1)·N - 1`` are all N images turned k times (4N images; Gidaris et al. found that seeing
    all four turns of an image in one batch trains better than one random turn). Otherwise each
    image is turned a random number of times, drawn from ``generator`` (the global generator of
    ``x``'s device if None), and keeps its place (N images).
    """
    if x.shape[-1] != x.shape[-2]:
        raise ValueError(f"rotation needs square images (a quarter turn changes the shape otherwise), got {tuple(x.shape[-2:])}")
    n = len(x)
    if all_rotations:
        images = torch.cat([torch.rot90(x, k, (2, 3)) for k in range(ROTATIONS)])
        labels = torch.arange(ROTATIONS, device=x.device).repeat_interleave(n)
        return images, labels
    labels = torch.randint(0, ROTATIONS, (n,), generator=generator, device=x.device)
    images = x.clone()
    for k in range(1, ROTATIONS):
        chosen = labels == k
        if chosen.any():
            images[chosen] = torch.rot90(x[chosen], k, (2, 3))
    return images, labels


@dataclass(frozen=True)
class RotationOptions:
    all_rotations: bool = field(
        default=True,
        metadata={"help": "train on all 4 turns of every image (4x the images per step, as Gidaris et al.); false: one random turn "
                          "per image"},
    )

    def __post_init__(self) -> None:
        if not isinstance(self.all_rotations, bool):
            raise ValueError(f"all_rotations must be true or false, got {self.all_rotations!r}")


class RotationNet(PretextNet):
    """Pooled body features → a linear 4-way classifier."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@PRETEXTS.register("rotation")
class Rotation(PretextTask):
    """4-way classification of the quarter turn an image was rotated by.

    The head is linear on the pooled features, so the body, not the head, has to find what
    says "upright". Validation turns every held-out image all four ways (no randomness), and
    its score is the share of the 4N turns told right (chance: 25 %).
    """

    Options = RotationOptions

    def build(self, body: Backbone) -> PretextNet:
        head = nn.Linear(body.num_features, ROTATIONS)
        nn.init.normal_(head.weight, std=0.01)
        nn.init.zeros_(head.bias)
        return RotationNet(body, head)

    def step(self, batch: Batch) -> dict[str, torch.Tensor]:
        images, labels = rotation_batch(batch.images, self.options.all_rotations)
        logits = self.net(images).float()
        return {"loss": F.cross_entropy(logits, labels), "acc": (logits.detach().argmax(1) == labels).float().mean()}

    def eval_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        images, labels = rotation_batch(batch.images, all_rotations=True)
        logits = self.module(images).float()
        return {
            "loss": F.cross_entropy(logits, labels, reduction="sum"),
            "correct": (logits.argmax(1) == labels).sum(),
            "count": torch.tensor(len(labels), device=logits.device),
        }

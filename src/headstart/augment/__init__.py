"""Named augmentation policies on uint8 image tensors (torchvision.transforms.v2).

Policies run per sample at the stored resolution, before the batch is resized to the model's
input size, so they cost little even on 2 cores.
"""

from __future__ import annotations

from typing import Callable

import torch
from torchvision.transforms import v2

from ..registry import Registry

POLICIES: Registry[Callable[[int], Callable[[torch.Tensor], torch.Tensor] | None]] = Registry("augmentation policy")


@POLICIES.register("none")
def none(size: int) -> None:
    """No augmentation: images are seen as they are (frozen features can then be cached)."""
    return None


@POLICIES.register("light")
def light(size: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """Random crop of 70–100 % of the area, resized back, and a horizontal flip.

    Keeps most of the object in view (small data cannot afford crops that cut the object away)
    while showing each image at many positions and scales.
    """
    return v2.Compose(
        [
            v2.RandomResizedCrop(size, scale=(0.7, 1.0), ratio=(3 / 4, 4 / 3), antialias=True),
            v2.RandomHorizontalFlip(),
        ]
    )


def build_policy(name: str, size: int) -> Callable[[torch.Tensor], torch.Tensor] | None:
    return POLICIES.get(name)(size)

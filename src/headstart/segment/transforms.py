"""Joint augmentation of an image and its mask: every geometric change is applied to both, the
image interpolated bilinearly and the mask by nearest neighbour (a label is never blended into
one that is not there); photometric changes touch the image alone.

The draws come from torch's global generator, which every checkpoint saves, so a resumed run
draws the same crops and flips as the uninterrupted one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..engine.batches import Batches
from ..methods.base import Batch


def brightness_contrast(image: torch.Tensor, jitter: float) -> torch.Tensor:
    """A uint8 image with its brightness and contrast each scaled by a random 1 ± ``jitter``
    (drawn from torch's global generator; ``jitter`` 0: the image as it is)."""
    if jitter <= 0:
        return image
    b = 1.0 + float(torch.empty(1).uniform_(-jitter, jitter))
    c = 1.0 + float(torch.empty(1).uniform_(-jitter, jitter))
    x = image.float()
    mean = x.mean()
    return ((x - mean) * c + mean * b).round().clamp(0, 255).to(torch.uint8)


@dataclass(frozen=True)
class JointAugment:
    """A random flip (``flip``: left-right, p = 0.5), a random crop of ``min_scale``..1 of the
    area at an aspect ratio within 3/4..4/3, resized back to the input's size, and a random
    brightness/contrast change of up to ±``jitter``.

    Called with a uint8 image (3, S, S) and a mask (S, S); returns both, same sizes."""

    flip: bool = True
    min_scale: float = 0.5
    jitter: float = 0.2

    def crop_box(self, h: int, w: int) -> tuple[int, int, int, int]:
        """(top, left, height, width) of a random crop (torchvision's RandomResizedCrop rule, 10
        tries, then the whole image)."""
        area = h * w
        log_ratio = (math.log(3 / 4), math.log(4 / 3))
        for _ in range(10):
            target = area * float(torch.empty(1).uniform_(self.min_scale, 1.0))
            ratio = math.exp(float(torch.empty(1).uniform_(*log_ratio)))
            cw = int(round(math.sqrt(target * ratio)))
            ch = int(round(math.sqrt(target / ratio)))
            if 0 < cw <= w and 0 < ch <= h:
                top = int(torch.randint(0, h - ch + 1, (1,)))
                left = int(torch.randint(0, w - cw + 1, (1,)))
                return top, left, ch, cw
        return 0, 0, h, w

    def __call__(self, image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h, w = mask.shape[-2:]
        if self.flip and bool(torch.rand(1) < 0.5):
            image, mask = image.flip(-1), mask.flip(-1)
        if self.min_scale < 1.0:
            top, left, ch, cw = self.crop_box(h, w)
            if (ch, cw) != (h, w):
                img = image[:, top : top + ch, left : left + cw].float()[None]
                image = F.interpolate(img, size=(h, w), mode="bilinear", align_corners=False).round().clamp(0, 255).to(torch.uint8)[0]
                m = mask[top : top + ch, left : left + cw].float()[None, None]
                mask = F.interpolate(m, size=(h, w), mode="nearest")[0, 0].to(mask.dtype)
        return brightness_contrast(image, self.jitter), mask


class JointBatches(Batches):
    """Shuffled batches of images and masks (``Batches``' order, resume and sharding), each
    image and its mask augmented together by ``joint``; yields ``Batch(images, labels=masks)``."""

    def __init__(self, images: torch.Tensor, masks: torch.Tensor, *, joint: JointAugment | None = None, **kwargs) -> None:
        super().__init__(images, masks, **kwargs)
        self.joint = joint

    def __iter__(self):
        for x, y in super().__iter__():
            if self.joint is not None:
                pairs = [self.joint(img, m) for img, m in zip(x, y)]
                x = torch.stack([p[0] for p in pairs])
                y = torch.stack([p[1] for p in pairs])
            yield Batch(images=x, labels=y.long())

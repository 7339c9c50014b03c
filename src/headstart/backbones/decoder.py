"""A light decoder: a feature map back to an image-sized map, for dense heads on a ``Backbone``.

The denoising pretext task (``methods/pretext/dae.py``) reconstructs the input image from the
body's last feature map with it, and a segmentation head can reuse it as is (``out_channels`` =
the number of classes). It is kept light on purpose: the body should do the work, so the
decoder is a few upsampling blocks whose width halves at each doubling of the resolution
(64 → 32 → 16 …, never under 16 channels), about 0.1 M parameters over a 128-channel map.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

MIN_WIDTH = 16
"""The narrowest block: below 16 channels a 3×3 conv has too little room to carry edges and
colour at once."""


def blocks_for(scale: int) -> int:
    """How many ×2 upsampling blocks bring a map ``scale`` times smaller back to full size:
    ``ceil(log2(scale))`` (stride 32 → 5, stride 8 → 3, stride 1 → 0). Rounding up keeps the
    last map at least as large as the output, so the final resize only ever shrinks or matches
    and never has to invent detail."""
    if scale < 1:
        raise ValueError(f"scale must be at least 1, got {scale}")
    return math.ceil(math.log2(scale)) if scale > 1 else 0


class UpBlock(nn.Sequential):
    """Bilinear ×2 upsampling, then a 3×3 conv, BatchNorm and ReLU."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            nn.Conv2d(cin, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )


class LightDecoder(nn.Module):
    """A feature map (N, in_channels, h, w) → a map (N, out_channels, H, W) of any given size.

    A 1×1 conv takes the map to ``width`` channels; ``blocks_for(scale)`` blocks each double the
    resolution (bilinear upsample, 3×3 conv, BatchNorm, ReLU) and halve the width (never under
    16); a final 3×3 conv gives ``out_channels``; a bilinear resize then gives exactly the size
    asked for (a shrink by less than 2×, as the blocks round up, so no antialiasing is needed). The number of blocks is fixed at construction from ``scale`` (the encoder's total
    stride), so the set of parameters never depends on the input: an optimizer and DDP see the
    same modules at every call. Sizes that are not a power-of-two multiple of the map (odd
    sizes, 57 from 4×4) come from the final resize.

    Args:
        in_channels: channels of the encoder's map.
        out_channels: channels of the output (3 for an RGB reconstruction, the class count for
            segmentation logits).
        width: channels after the 1×1 conv, halved by each block.
        scale: how much larger the output is than the map (the encoder's stride, e.g. 32 for
            an ImageNet network at its last stage, 8 for ``resnet_small``).
    """

    def __init__(self, in_channels: int, out_channels: int = 3, width: int = 64, *, scale: int = 32) -> None:
        super().__init__()
        if in_channels < 1 or out_channels < 1:
            raise ValueError(f"in_channels and out_channels must be positive, got {in_channels} and {out_channels}")
        if width < MIN_WIDTH:
            raise ValueError(f"width must be at least {MIN_WIDTH}, got {width}")
        self.scale = int(scale)
        self.proj = nn.Conv2d(in_channels, width, 1)
        blocks = []
        cin = width
        for _ in range(blocks_for(self.scale)):
            cout = max(MIN_WIDTH, cin // 2)
            blocks.append(UpBlock(cin, cout))
            cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.out = nn.Conv2d(cin, out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
        """The decoded map at exactly ``size`` (an int for a square, or (H, W))."""
        hw = (size, size) if isinstance(size, int) else tuple(size)
        y = self.out(self.blocks(self.proj(x)))
        if tuple(y.shape[-2:]) != hw:
            y = F.interpolate(y, size=hw, mode="bilinear", align_corners=False)
        return y

"""The segmentation network: a registered backbone as the encoder, a U-Net-style decoder with
skips, and one switch for how the decoder restores resolution (seeds 002 and 004).

The encoder is any :class:`~headstart.backbones.Backbone` whose stages give feature maps: its
stages are run once on a probe image to measure each one's stride, and the last stage at each
stride becomes a skip (for EfficientNet-Lite0 at 64 px: ``blocks.0`` at 2, ``blocks.1`` at 4,
``blocks.2`` at 8, ``blocks.4`` at 16, ``conv_head`` at 32). Stages after the deepest skip are
not run. Freezing works as for a classifier (``Backbone.freeze``), so the strategies and the
advisor's freeze depth apply to the encoder unchanged.

The decoder starts from the deepest map (a 1×1 conv brings it to the first decoder width), then
at each level doubles the resolution, concatenates the skip of that stride, and mixes them with
a 3×3 conv (BatchNorm, ReLU); a last doubling reaches the input's resolution where the shallowest
skip is at stride 2, and a 1×1 conv gives the class logits.

``upsample`` is how each doubling is done, with the same channel widths either way:

- ``bilinear``: bilinear interpolation ×2, then a 3×3 conv (the choice of U-Net descendants and
  of segmentation_models_pytorch);
- ``transposed``: a learned transposed conv, kernel 4, stride 2, padding 1. Its kernel is a
  multiple of its stride, so every output pixel receives the same number of kernel taps and no
  checkerboard pattern is built in (Odena et al. 2016, "Deconvolution and checkerboard
  artifacts"); ``bilinear_init`` starts it as an exact bilinear ×2 upsampling of each channel
  (channel i to channel i), so it begins where ``bilinear`` does and learns from there.

Sizes that are not a multiple of 32 (odd sides included) work: each upsampled map is resized
to its skip's size before the two are joined, and the logits to the input's size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..backbones.base import Backbone

UPSAMPLINGS = ("bilinear", "transposed")
DECODER_WIDTHS = (128, 64, 48, 32, 16)
"""Decoder channels after each doubling, deepest first; the last repeats for deeper encoders."""
PROBE_SIZE = 64


def stage_strides(backbone: Backbone, size: int = PROBE_SIZE) -> list[tuple[int, int] | None]:
    """Each stage's (stride, channels) on a ``size`` px probe image, or None for a stage whose
    output is not a feature map. The probe runs in eval mode without gradients; the model's
    mode is restored."""
    was = backbone.training
    backbone.eval()
    out: list[tuple[int, int] | None] = []
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        x = torch.zeros(1, 3, size, size)
        for stage in backbone.stages:
            x = stage(x)
            if x.dim() != 4:
                out.append(None)
                break
            out.append((max(1, round(size / x.shape[-1])), int(x.shape[1])))
    out += [None] * (backbone.num_stages - len(out))
    backbone.train(was)
    return out


def skip_indices(strides: list[tuple[int, int] | None]) -> list[int]:
    """The last stage at each stride, shallowest first (a stage at stride 1 — a stem that keeps
    the resolution — is not a skip: the input's own resolution is reached by the decoder)."""
    last: dict[int, int] = {}
    for i, s in enumerate(strides):
        if s is not None and s[0] > 1:
            last[s[0]] = i
    if not last:
        raise ValueError("the backbone has no stage with a spatial feature map to decode")
    return [last[s] for s in sorted(last)]


def bilinear_kernel(size: int = 4) -> torch.Tensor:
    """The ``size`` × ``size`` kernel with which a stride-2 transposed conv (padding 1 for size 4)
    is exact bilinear ×2 upsampling (FCN's initialisation, Long et al. 2015)."""
    factor = (size + 1) // 2
    center = factor - 1 if size % 2 == 1 else factor - 0.5
    og = torch.arange(size, dtype=torch.float64)
    k1 = 1 - (og - center).abs() / factor
    return (k1[:, None] * k1[None, :]).float()


class Up(nn.Module):
    """×2 upsampling from ``cin`` to ``cout`` channels, ``bilinear`` (interpolate, then 3×3 conv)
    or ``transposed`` (a 4×4 stride-2 transposed conv), then BatchNorm and ReLU."""

    def __init__(self, cin: int, cout: int, mode: str, bilinear_init: bool = False) -> None:
        super().__init__()
        if mode not in UPSAMPLINGS:
            raise ValueError(f"upsample must be one of {UPSAMPLINGS}, got {mode!r}")
        self.mode = mode
        if mode == "bilinear":
            self.conv: nn.Module = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        else:
            self.conv = nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1, bias=False)
            if bilinear_init:
                with torch.no_grad():
                    self.conv.weight.zero_()
                    k = bilinear_kernel(4)
                    for c in range(min(cin, cout)):
                        self.conv.weight[c, c] = k
        self.norm = nn.BatchNorm2d(cout)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        if self.mode == "bilinear":
            x = self.conv(F.interpolate(x, size=size, mode="bilinear", align_corners=False))
        else:
            x = self.conv(x)
            if tuple(x.shape[-2:]) != tuple(size):  # an odd skip: the doubled map is one pixel larger or smaller
                x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return self.act(self.norm(x))


class Fuse(nn.Sequential):
    """The upsampled map and its skip, concatenated, mixed by a 3×3 conv, BatchNorm, ReLU."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class UNetDecoder(nn.Module):
    """Skip maps (shallowest first, strides ascending by ×2 or more) → logits at the input size.

    Args:
        skip_channels: channels of each skip map, shallowest first.
        skip_strides: their strides, shallowest first.
        num_classes: logits per pixel.
        upsample: ``bilinear`` | ``transposed``.
        bilinear_init: start transposed convs as bilinear upsampling.
        widths: decoder channels after each doubling, deepest first.
    """

    def __init__(self, skip_channels: list[int], skip_strides: list[int], num_classes: int, *, upsample: str = "bilinear",
                 bilinear_init: bool = False, widths: tuple[int, ...] = DECODER_WIDTHS) -> None:
        super().__init__()
        if len(skip_channels) != len(skip_strides) or not skip_channels:
            raise ValueError("one channel count per skip stride, at least one skip")
        self.upsample = upsample
        self.skip_strides = list(skip_strides)
        deep = skip_channels[-1]
        levels = len(skip_channels) - 1  # doublings that meet a skip
        final = 1 if skip_strides[0] > 1 else 0
        need = levels + final
        widths = tuple(widths) + (widths[-1],) * max(0, need + 1 - len(widths))
        self.center = nn.Sequential(nn.Conv2d(deep, widths[0], 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True))
        ups, fuses = [], []
        cin = widths[0]
        for j in range(levels):
            skip_c = skip_channels[-2 - j]
            cout = widths[j + 1]
            ups.append(Up(cin, cout, upsample, bilinear_init))
            fuses.append(Fuse(cout + skip_c, cout))
            cin = cout
        self.ups = nn.ModuleList(ups)
        self.fuses = nn.ModuleList(fuses)
        self.final_up = Up(cin, widths[levels + 1], upsample, bilinear_init) if final else None
        cin = widths[levels + 1] if final else cin
        self.classifier = nn.Conv2d(cin, num_classes, 1)

    def forward(self, skips: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        x = self.center(skips[-1])
        for j, (up, fuse) in enumerate(zip(self.ups, self.fuses)):
            skip = skips[-2 - j]
            x = fuse(torch.cat([up(x, tuple(skip.shape[-2:])), skip], dim=1))
        if self.final_up is not None:
            x = self.final_up(x, size)
        x = self.classifier(x)
        if tuple(x.shape[-2:]) != tuple(size):
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return x


class Segmenter(nn.Module):
    """A backbone's stages as the encoder and a :class:`UNetDecoder`: images (N, 3, H, W) →
    logits (N, classes, H, W). ``backbone.head`` takes no part (it is set not to train)."""

    def __init__(self, backbone: Backbone, num_classes: int, *, upsample: str = "bilinear", bilinear_init: bool = False,
                 skips: list[int] | None = None, probe_size: int = PROBE_SIZE) -> None:
        super().__init__()
        self.backbone = backbone
        backbone.head.requires_grad_(False)
        strides = stage_strides(backbone, probe_size)
        self.skips = list(skips) if skips is not None else skip_indices(strides)
        for i in self.skips:
            if strides[i] is None:
                raise ValueError(f"stage {backbone.stage_names[i]} of {backbone.name} has no feature map to use as a skip")
        self.num_classes = num_classes
        self.upsample = upsample
        self.decoder = UNetDecoder([strides[i][1] for i in self.skips], [strides[i][0] for i in self.skips], num_classes,
                                   upsample=upsample, bilinear_init=bilinear_init)

    @property
    def skip_names(self) -> list[str]:
        return [self.backbone.stage_names[i] for i in self.skips]

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The skip maps, shallowest first; stages past the deepest skip are not run."""
        out = []
        wanted = set(self.skips)
        for i, stage in enumerate(self.backbone.stages[: self.skips[-1] + 1]):
            x = stage(x)
            if i in wanted:
                out.append(x)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encode(x), tuple(x.shape[-2:]))

    def parameter_counts(self) -> dict[str, int]:
        enc = sum(p.numel() for s in self.backbone.stages[: self.skips[-1] + 1] for p in s.parameters())
        dec = sum(p.numel() for p in self.decoder.parameters())
        return {"encoder": enc, "decoder": dec, "total": enc + dec}


"""Denoising autoencoder (Vincent et al. 2008, "Extracting and composing robust features with
denoising autoencoders"), with the masking of context encoders (Pathak et al. 2016): the body
encodes a corrupted image, a light decoder reconstructs the clean one.

Additive noise alone teaches local smoothing; masking whole cells of the image teaches the body
to fill in what a region holds from its surroundings, which takes knowing what objects and
textures continue how. Both are applied, in the prepared (normalised) units of the body's
input, and the loss is the mean squared error against the clean prepared image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from ...backbones.base import Backbone
from ...backbones.decoder import LightDecoder
from ..base import Batch
from .base import PRETEXTS, PretextNet, PretextTask, eval_generator


def masked_cells(mask_frac: float, mask_cells: int) -> int:
    """How many of the ``mask_cells``² cells each image loses: ``round(mask_frac · cells²)``
    (8 of 16 at the defaults), the same number for every image so every image is as hard."""
    return round(mask_frac * mask_cells * mask_cells)


def corrupt(
    x: torch.Tensor, noise_std: float, mask_frac: float, mask_cells: int, generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(corrupted, mask)``: ``x`` (N, C, H, W) plus Gaussian noise of std ``noise_std``, with
    ``masked_cells(mask_frac, mask_cells)`` cells of a ``mask_cells`` × ``mask_cells`` grid set to
    0 (the dataset mean, in normalised units), chosen per image; ``mask`` (N, 1, H, W) is 1
    where masked.

    Pixel row r belongs to cell row ``floor(r · cells / H)`` (columns alike), so the cells tile
    the image exactly, their sides differing by at most one pixel where ``H`` is not a multiple
    of ``cells``. Draws come from ``generator`` (the global generator of ``x``'s device if None).
    """
    n, _, h, w = x.shape
    dev = x.device
    k = masked_cells(mask_frac, mask_cells)
    cells = mask_cells * mask_cells
    order = torch.rand(n, cells, generator=generator, device=dev).argsort(dim=1)
    chosen = torch.zeros(n, cells, dtype=torch.bool, device=dev)
    chosen.scatter_(1, order[:, :k], True)
    chosen = chosen.view(n, mask_cells, mask_cells)
    rows = torch.arange(h, device=dev) * mask_cells // h
    cols = torch.arange(w, device=dev) * mask_cells // w
    mask = chosen[:, rows][:, :, cols][:, None]  # (N, 1, H, W)
    noisy = x
    if noise_std > 0:
        noisy = x + noise_std * torch.randn(x.shape, generator=generator, device=dev, dtype=x.dtype)
    corrupted = torch.where(mask, torch.zeros((), dtype=x.dtype, device=dev), noisy)
    return corrupted, mask.to(x.dtype)


def reconstruction_error(decoded: torch.Tensor, clean: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """(N,) each image's mean squared error, over all its pixels and channels, or with a
    ``mask`` (N, 1, H, W) over its masked pixels only (an image with none masked scores 0)."""
    err = (decoded.float() - clean.float()) ** 2
    if mask is None:
        return err.mean(dim=(1, 2, 3))
    m = mask.to(err.dtype)
    return (err * m).sum(dim=(1, 2, 3)) / (m.sum(dim=(1, 2, 3)) * err.shape[1]).clamp(min=1)


@dataclass(frozen=True)
class DAEOptions:
    noise_std: float = field(default=0.5, metadata={"help": "std of the additive Gaussian noise, in normalised units (0 = none)"})
    mask_frac: float = field(default=0.5, metadata={"help": "share of the grid's cells set to 0 in every image (0 = no masking)"})
    mask_cells: int = field(default=4, metadata={"help": "the masking grid is mask_cells x mask_cells cells"})
    masked_only: bool = field(default=False, metadata={"help": "score the reconstruction on the masked cells only (as context encoders)"})
    decoder_width: int = field(default=64, metadata={"help": "channels of the decoder's first block, halved by each later one (min 16)"})

    def __post_init__(self) -> None:
        if not self.noise_std >= 0:
            raise ValueError(f"noise_std must be at least 0, got {self.noise_std}")
        if not 0.0 <= self.mask_frac < 1.0:
            raise ValueError(f"mask_frac must be in [0, 1) (some of the image must stay to reconstruct from), got {self.mask_frac}")
        if self.mask_cells < 1:
            raise ValueError(f"mask_cells must be at least 1, got {self.mask_cells}")
        if not isinstance(self.masked_only, bool):
            raise ValueError(f"masked_only must be true or false, got {self.masked_only!r}")
        if self.masked_only and masked_cells(self.mask_frac, self.mask_cells) < 1:
            raise ValueError(f"masked_only needs masked cells, but mask_frac={self.mask_frac} of {self.mask_cells}x{self.mask_cells} "
                             "cells masks none; raise mask_frac or mask_cells")
        if self.decoder_width < 16:
            raise ValueError(f"decoder_width must be at least 16, got {self.decoder_width}")


def _spatial_error(name: str, shape: tuple[int, ...]) -> ValueError:
    return ValueError(f"dae needs a spatial body: the last stage of {name} gives a flat vector {shape}, with no map to decode; "
                      "choose a convolutional backbone whose last stage keeps a feature map")


class DenoisingNet(PretextNet):
    """The body's last feature map, decoded back to the input's size."""

    def forward(self, corrupted: torch.Tensor) -> torch.Tensor:
        fmap = self.body.forward_stages(corrupted)
        if fmap.dim() != 4:
            raise _spatial_error(self.body.name, tuple(fmap.shape))
        return self.head(fmap, tuple(corrupted.shape[-2:]))


@PRETEXTS.register("dae")
class DenoisingAutoencoder(PretextTask):
    """Reconstruct the clean prepared image from a noisy, partly masked one.

    The decoder (``backbones.decoder.LightDecoder``) has as many upsampling blocks as the body's
    stride needs, measured once at construction by one forward pass of a blank image at the
    body's native size (it also finds a body whose last stage is flat, which has nothing to
    decode, and says so before training starts). Validation corrupts from a fixed seed; its
    score is the negated mean squared error (higher is better).
    """

    Options = DAEOptions

    def build(self, body: Backbone) -> PretextNet:
        size = int(body.preprocess.image_size)
        param = next(body.parameters(), None)
        was_training = body.training
        body.eval()
        with torch.no_grad():
            probe = torch.zeros(1, 3, size, size, device=param.device if param is not None else "cpu")
            fmap = body.forward_stages(probe)
        body.train(was_training)
        if fmap.dim() != 4:
            raise _spatial_error(body.name, tuple(fmap.shape))
        scale = max(1, math.ceil(size / fmap.shape[-1]))
        return DenoisingNet(body, LightDecoder(fmap.shape[1], 3, self.options.decoder_width, scale=scale))

    def _losses(self, net: nn.Module, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        o = self.options
        corrupted, mask = corrupt(x, o.noise_std, o.mask_frac, o.mask_cells, generator)
        decoded = net(corrupted)
        return reconstruction_error(decoded, x, mask if o.masked_only else None)

    def step(self, batch: Batch) -> dict[str, torch.Tensor]:
        return {"loss": self._losses(self.net, batch.images, None).mean()}

    def eval_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        errors = self._losses(self.module, batch.images, eval_generator(batch.images.device))
        return {"loss": errors.sum(), "count": torch.tensor(len(errors), device=errors.device)}

    def score(self, sums: dict[str, float]) -> dict[str, float]:
        """The negated mean squared error first (higher is better), then the error itself."""
        mse = sums["loss"] / max(1.0, sums["count"])
        return {"val_neg_mse": -mse, "val_loss": mse}

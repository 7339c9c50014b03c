"""Instance discrimination: Dosovitskiy et al.'s Exemplar task (2014, every image its own class
under heavy augmentation) in the form SimCLR gave it (Chen et al. 2020): two random views of
each image, and a contrastive loss (NT-Xent) that pulls the two views' embeddings together and
pushes every other image's away.

To recognise an image through cropping, flipping and a change of brightness and contrast, the
body must keep what survives them (shapes, parts, textures) and drop what does not (position,
exposure): the invariances a classifier wants. The views are made here, on the prepared
tensors, per image, vectorised over the batch (``torchvision.ops.roi_align`` crops and resizes
every image in one call), so the task runs on any batch source.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import roi_align

from ...backbones.base import Backbone
from ..base import Batch
from .base import PRETEXTS, PretextNet, PretextTask, eval_generator

RATIO_RANGE = (3 / 4, 4 / 3)
"""Aspect ratios of a crop (width / height), drawn log-uniformly: torchvision's
``RandomResizedCrop`` range, which SimCLR uses."""
HIDDEN = 512
"""Width of the projection MLP's hidden layer (SimCLR keeps the hidden layer as wide as the
features, 2048 for a ResNet-50; 512 is ample for the 128-1280 features of our bodies)."""


def crop_resize(x: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Each image's box cut out and resized bilinearly to ``size`` × ``size``, in one call.

    ``boxes`` (N, 4) are (x1, y1, x2, y2) in pixels, edges of the pixel grid (the whole image is
    (0, 0, W, H)). ``roi_align`` with ``aligned=True`` and one sample per output pixel is the
    same bilinear map as ``F.interpolate(..., align_corners=False)``: the whole-image box resized
    to the image's own size returns the image unchanged. Where a box edge lies inside the
    image the samples next to it blend in the pixels just outside the box, as a crop of the
    continuous image should.
    """
    rois = torch.cat([torch.arange(len(x), device=x.device, dtype=x.dtype)[:, None], boxes.to(x.dtype)], dim=1)
    return roi_align(x.contiguous(), rois, output_size=(size, size), spatial_scale=1.0, sampling_ratio=1, aligned=True)


def random_view(x: torch.Tensor, crop_min: float, jitter: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """One random view of every image (N, C, S, S), each image its own draws: a random resized
    crop (area share in [crop_min, 1], aspect ratio in [3/4, 4/3], resized back to S × S), a
    horizontal flip half the time, and ``x·a + b`` with contrast ``a`` in [1 - jitter,
    1 + jitter] and brightness ``b`` in [-jitter, jitter] (normalised units: 0.4 is about a
    tenth of an ImageNet-normalised image's range).

    A crop whose drawn width or height would exceed the image is clipped to it (torchvision
    redraws instead, up to 10 times; clipping only ever happens for areas near 1 and keeps the
    batch one vectorised call). Draws come from ``generator`` (the global generator of ``x``'s
    device if None).
    """
    n, _, h, w = x.shape
    dev = x.device

    def uniform(lo: float, hi: float, *shape: int) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, *shape, generator=generator, device=dev)

    area = uniform(crop_min, 1.0)
    ratio = torch.exp(uniform(math.log(RATIO_RANGE[0]), math.log(RATIO_RANGE[1])))
    cw = torch.sqrt(area * ratio).clamp(max=1.0) * w
    ch = torch.sqrt(area / ratio).clamp(max=1.0) * h
    x0 = torch.rand(n, generator=generator, device=dev) * (w - cw)
    y0 = torch.rand(n, generator=generator, device=dev) * (h - ch)
    view = crop_resize(x, torch.stack([x0, y0, x0 + cw, y0 + ch], dim=1), h)
    flip = torch.rand(n, generator=generator, device=dev) < 0.5
    view = torch.where(flip[:, None, None, None], view.flip(3), view)
    a = uniform(1.0 - jitter, 1.0 + jitter)[:, None, None, None]
    b = uniform(-jitter, jitter)[:, None, None, None]
    return (view * a.to(view.dtype) + b.to(view.dtype)).contiguous(memory_format=torch.channels_last)


def _logits(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(2N, 2N) cosine similarities / T with each anchor's self-similarity masked out, and
    each anchor's positive (the other view of its image: anchor i < N pairs with i + N). In at
    least float32 and outside autocast: bfloat16 keeps under 3 significant digits, coarser than
    the differences between similarities that a temperature of 0.1 magnifies tenfold."""
    z = torch.cat([z1, z2]).to(torch.promote_types(z1.dtype, torch.float32))
    with torch.autocast(z.device.type, enabled=False):
        z = F.normalize(z, dim=1)
        sim = z @ z.T / temperature
    sim = sim.masked_fill(torch.eye(len(z), dtype=torch.bool, device=z.device), float("-inf"))
    n = len(z1)
    positives = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return sim, positives


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float, reduction: str = "mean") -> torch.Tensor:
    """SimCLR's normalised temperature-scaled cross-entropy over the 2N anchors of N pairs.

    For anchor i with positive p(i): ``-log(exp(s(i, p)/T) / Σ_{k≠i} exp(s(i, k)/T))`` with s
    the cosine similarity: a 2N-way classification of which other embedding is the anchor's
    other view, the 2N - 2 other images' views as negatives. A low T (0.1) weighs the hardest
    negatives most; SimCLR found 0.5 best for small batches. ``reduction``: "mean" (over the 2N
    anchors), "sum", or "none" (one loss per anchor).
    """
    if len(z1) != len(z2):
        raise ValueError(f"the two views must have the same number of embeddings, got {len(z1)} and {len(z2)}")
    sim, positives = _logits(z1, z2, temperature)
    return F.cross_entropy(sim, positives, reduction=reduction)


def positive_is_nearest(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """(2N,) whether each anchor's most similar other embedding is its positive: the
    instance-discrimination accuracy (chance: 1 / (2N - 1))."""
    sim, positives = _logits(z1, z2, 1.0)
    return sim.argmax(1) == positives


@dataclass(frozen=True)
class ExemplarOptions:
    temperature: float = field(default=0.5, metadata={"help": "NT-Xent temperature; SimCLR found 0.5 best at small batches"})
    crop_min: float = field(
        default=0.3,
        metadata={"help": "smallest crop, as a share of the image's area (SimCLR: 0.08; larger keeps more of small images, "
                          "e.g. 0.6)"},
    )
    jitter: float = field(
        default=0.4,
        metadata={"help": "contrast jitter x*a with a in [1-jitter, 1+jitter] and brightness shift in [-jitter, jitter] "
                          "(normalised units)"},
    )
    proj_dim: int = field(default=128, metadata={"help": "width of the projection the loss is computed on (SimCLR: 128)"})

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise ValueError(f"temperature must be positive, got {self.temperature}")
        if not 0.0 < self.crop_min <= 1.0:
            raise ValueError(f"crop_min must be in (0, 1], got {self.crop_min}")
        if not 0.0 <= self.jitter < 1.0:
            raise ValueError(f"jitter must be in [0, 1) (contrast must stay positive), got {self.jitter}")
        if self.proj_dim < 1:
            raise ValueError(f"proj_dim must be at least 1, got {self.proj_dim}")


class ExemplarNet(PretextNet):
    """Both views through the body in one batch (2N images), pooled, projected by the MLP."""

    def forward(self, v1: torch.Tensor, v2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.head(self.features(torch.cat([v1, v2])))
        return z[: len(v1)], z[len(v1):]


@PRETEXTS.register("exemplar")
class Exemplar(PretextTask):
    """Two random views per image, a projection MLP (features → 512 → proj_dim, BatchNorm and
    ReLU between, as SimCLR) and the NT-Xent loss.

    The loss is taken on the projection, and the body's pooled features, one layer earlier,
    are what transfers: SimCLR found them better by over 10 points, as the projection learns
    to drop what the augmentations vary. Validation scores the share of the 2N views whose
    nearest other embedding is their image's other view.
    """

    Options = ExemplarOptions

    def build(self, body: Backbone) -> PretextNet:
        head = nn.Sequential(
            nn.Linear(body.num_features, HIDDEN), nn.BatchNorm1d(HIDDEN), nn.ReLU(inplace=True), nn.Linear(HIDDEN, self.options.proj_dim),
        )
        return ExemplarNet(body, head)

    def _views(self, x: torch.Tensor, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        o = self.options
        return random_view(x, o.crop_min, o.jitter, generator), random_view(x, o.crop_min, o.jitter, generator)

    def step(self, batch: Batch) -> dict[str, torch.Tensor]:
        z1, z2 = self.net(*self._views(batch.images, None))
        loss = nt_xent(z1, z2, self.options.temperature)
        return {"loss": loss, "acc": positive_is_nearest(z1.detach(), z2.detach()).float().mean()}

    def eval_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        z1, z2 = self.module(*self._views(batch.images, eval_generator(batch.images.device)))
        return {
            "loss": nt_xent(z1, z2, self.options.temperature, reduction="sum"),
            "correct": positive_is_nearest(z1, z2).sum(),
            "count": torch.tensor(2 * len(z1), device=z1.device),
        }

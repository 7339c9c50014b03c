"""Relative patch location (Doersch, Gupta & Efros 2015, "Unsupervised visual representation
learning by context prediction"): given the centre patch of a 3×3 grid and one of its eight
neighbours, say which neighbour it is.

To tell that a patch of fur lies above-left of an eye the body must recognise both as parts
of one object and know how the parts are arranged. Two shortcuts are closed as the paper does:
the patches never touch and are jittered in their cells (no continuing edge or texture to line
up), and a third of the patches lose their colour (no chromatic aberration, which lenses add
differently towards the image's edges, to give their position away).

The geometry, for an S × S image (all in whole pixels):

- the grid: cells of side ``c = S // 3``, the 3 × 3 grid centred (``o = (S - 3c) // 2`` pixels
  left over on the top and left);
- the jitter: ``j = floor(jitter_frac · c)``, each patch moved by up to j pixels each way;
- the gap: ``g = max(round(gap_frac · c), 2j + 1)`` pixels of each cell that no patch covers;
- the patch side ``P = c - g``; a patch's top-left corner lies ``g // 2 + d`` pixels from its
  cell's top-left corner, ``d`` drawn in [-j, j] per axis and patch.

So a patch stays inside its cell, at least ``g // 2 - j ≥ 0`` pixels from the cell's top/left
edge and ``g - g // 2 - j ≥ 1`` from its bottom/right edge: two patches in neighbouring cells
are at least ``g - 2j ≥ 1`` pixels apart. At 32 px: c = 10, j = 1, g = 3, P = 7; at 224 px:
c = 74, j = 7, g = 19, P = 55.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ...backbones.base import Backbone
from ..base import Batch
from .base import PRETEXTS, PretextNet, PretextTask, eval_generator

NEIGHBOURS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))
"""(row, column) step from the centre cell to neighbour ``label``, in reading order: top-left,
top, top-right, left, right, bottom-left, bottom, bottom-right (labels 0..7)."""
COLOR_DROP_SHARE = 1 / 3
"""The share of patches made grey (each patch on its own draw): enough that colour fringes stop
being a reliable cue, while most patches keep the colour that helps tell parts apart."""
HIDDEN = 512
"""Width of the MLP on the two patches' concatenated features (Doersch et al. used fully
connected layers of 4096 on AlexNet; 512 suffices for our bodies' 128-1280 features)."""


@dataclass(frozen=True)
class PatchGeometry:
    """The grid of one image size, in pixels (see the module docstring): ``origin`` of the
    grid, ``cell`` side, ``gap``, ``jitter`` and patch ``side``."""

    origin: int
    cell: int
    gap: int
    jitter: int
    side: int


def patch_geometry(size: int, gap_frac: float = 0.25, jitter_frac: float = 0.1) -> PatchGeometry:
    """The grid for ``size`` × ``size`` images; an image too small to hold patches at least one
    pixel wide that never touch is a clear error."""
    cell = size // 3
    jitter = math.floor(jitter_frac * cell)
    gap = max(math.floor(gap_frac * cell + 0.5), 2 * jitter + 1)
    side = cell - gap
    if side < 1:
        raise ValueError(f"patch: {size}-px images are too small for 3x3 patches that never touch (cell {cell} px, gap {gap} px); "
                         "use larger images or a smaller gap_frac/jitter_frac")
    return PatchGeometry(origin=(size - 3 * cell) // 2, cell=cell, gap=gap, jitter=jitter, side=side)


def patch_positions(
    size: int, n: int, generator: torch.Generator | None = None, *, gap_frac: float = 0.25, jitter_frac: float = 0.1,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """``(centre_yx, neighbour_yx, labels, side)`` for ``n`` pairs in a ``size``-px image: the
    top-left corners (n, 2) in pixels (row, column) of each centre patch and of its neighbour,
    the neighbour's label (n,) in 0..7 (``NEIGHBOURS``), and the patch side P.

    Each pair draws its label uniformly (every direction equally often, so no prior helps) and
    the jitter of each of its two patches independently. Draws come from ``generator`` (the
    global generator of ``device`` if None; ``device`` defaults to the generator's, else the CPU).
    """
    geo = patch_geometry(size, gap_frac, jitter_frac)
    dev = torch.device(device) if device is not None else (generator.device if generator is not None else torch.device("cpu"))
    labels = torch.randint(0, len(NEIGHBOURS), (n,), generator=generator, device=dev)
    j = geo.jitter
    jitter = torch.randint(-j, j + 1, (2, n, 2), generator=generator, device=dev)
    steps = torch.tensor(NEIGHBOURS, device=dev)[labels]  # (n, 2)
    base = geo.origin + geo.gap // 2
    centre = base + geo.cell + jitter[0]
    neighbour = base + (1 + steps) * geo.cell + jitter[1]
    return centre, neighbour, labels, geo.side


def cut_patches(x: torch.Tensor, yx: torch.Tensor, side: int) -> torch.Tensor:
    """The ``side`` × ``side`` patch of each image at its top-left corner ``yx`` (N, 2), by
    integer indexing: exact pixels, no interpolation, one gather for the whole batch."""
    n = len(x)
    offsets = torch.arange(side, device=x.device)
    yx = yx.to(x.device)
    rows = (yx[:, 0:1] + offsets)[:, :, None]  # (N, P, 1)
    cols = (yx[:, 1:2] + offsets)[:, None, :]  # (N, 1, P)
    patches = x[torch.arange(n, device=x.device)[:, None, None], :, rows, cols]  # (N, P, P, C)
    return patches.permute(0, 3, 1, 2)


def drop_color(x: torch.Tensor, share: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """``x`` with a random ``share`` of its images (each on its own draw) replaced by their
    channel mean, repeated over the channels: grey patches carry no colour fringe."""
    grey = torch.rand(len(x), generator=generator, device=x.device) < share
    mean = x.mean(dim=1, keepdim=True).expand_as(x)
    return torch.where(grey[:, None, None, None], mean, x)


@dataclass(frozen=True)
class PatchOptions:
    gap_frac: float = field(
        default=0.25,
        metadata={"help": "the share of each grid cell's side left between patches (raised to 2*jitter+1 px so patches never touch)"},
    )
    jitter_frac: float = field(default=0.1, metadata={"help": "how far each patch moves in its cell, per axis, as a share of the cell's side"})
    color_drop: bool = field(default=True, metadata={"help": "make a random third of the patches grey (no chromatic-aberration cue)"})

    def __post_init__(self) -> None:
        if not 0.0 <= self.gap_frac < 1.0:
            raise ValueError(f"gap_frac must be in [0, 1), got {self.gap_frac}")
        if not 0.0 <= self.jitter_frac < 0.5:
            raise ValueError(f"jitter_frac must be in [0, 0.5), got {self.jitter_frac}")
        if not isinstance(self.color_drop, bool):
            raise ValueError(f"color_drop must be true or false, got {self.color_drop!r}")


class PatchNet(PretextNet):
    """Both patch batches through the body at once (2N patches), each pair's two pooled
    features concatenated (centre first) and classified into 8 directions."""

    def forward(self, centre: torch.Tensor, neighbour: torch.Tensor) -> torch.Tensor:
        f = self.features(torch.cat([centre, neighbour]))
        n = len(centre)
        return self.head(torch.cat([f[:n], f[n:]], dim=1))


@PRETEXTS.register("patch")
class RelativePatch(PretextTask):
    """8-way classification of a neighbour patch's place relative to the centre patch.

    One pair per image per step; the head is an MLP (2·features → 512 → 8) on the two pooled
    features, so the comparison happens after the body (which sees each patch alone, as
    Doersch et al.'s siamese network). Validation draws its pairs from a fixed seed; its score
    is the share told right (chance: 12.5 %).
    """

    Options = PatchOptions

    def build(self, body: Backbone) -> PretextNet:
        head = nn.Sequential(nn.Linear(2 * body.num_features, HIDDEN), nn.ReLU(inplace=True), nn.Linear(HIDDEN, len(NEIGHBOURS)))
        return PatchNet(body, head)

    def _pairs(self, x: torch.Tensor, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if x.shape[-1] != x.shape[-2]:
            raise ValueError(f"patch needs square images, got {tuple(x.shape[-2:])}")
        o = self.options
        centre_yx, neighbour_yx, labels, side = patch_positions(
            x.shape[-1], len(x), generator, gap_frac=o.gap_frac, jitter_frac=o.jitter_frac, device=x.device)
        centre, neighbour = cut_patches(x, centre_yx, side), cut_patches(x, neighbour_yx, side)
        if o.color_drop:
            centre, neighbour = drop_color(centre, COLOR_DROP_SHARE, generator), drop_color(neighbour, COLOR_DROP_SHARE, generator)
        return centre.contiguous(), neighbour.contiguous(), labels

    def step(self, batch: Batch) -> dict[str, torch.Tensor]:
        centre, neighbour, labels = self._pairs(batch.images, None)
        logits = self.net(centre, neighbour).float()
        return {"loss": F.cross_entropy(logits, labels), "acc": (logits.detach().argmax(1) == labels).float().mean()}

    def eval_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        centre, neighbour, labels = self._pairs(batch.images, eval_generator(batch.images.device))
        logits = self.module(centre, neighbour).float()
        return {
            "loss": F.cross_entropy(logits, labels, reduction="sum"),
            "correct": (logits.argmax(1) == labels).sum(),
            "count": torch.tensor(len(labels), device=logits.device),
        }

"""Features of a frozen backbone, computed once per image.

When the body is frozen and sees no random augmentation its output for an image never
changes, so a linear probe or kNN trains from these cached vectors instead of running the
network every epoch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Iterable

import torch

from ..backbones import Backbone
from .batches import Batches
from .cache import FeatureCache
from .distributed import SINGLE, Distributed
from .loop import autocast_for
from .progress import EpochProgress, console

if TYPE_CHECKING:
    from ..data import ImageSet


@torch.no_grad()
def extract_features(
    model: Backbone,
    batches: Iterable,
    *,
    prepare: Callable[[torch.Tensor], torch.Tensor],
    device: torch.device,
    description: str = "features",
    show_progress: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pooled penultimate features (float32, CPU) and labels for every batch, in order."""
    was_training = model.training
    model.eval()
    feats, labels = [], []
    with EpochProgress(description, len(batches), show_progress) as bar, autocast_for(device):  # type: ignore[arg-type]
        for x, y in batches:
            feats.append(model.forward_features(prepare(x)).float().cpu())
            labels.append(torch.as_tensor(y))
            bar.advance()
    model.train(was_training)
    return torch.cat(feats), torch.cat(labels)


def cached_features(
    model: Backbone,
    imageset: "ImageSet",
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    cache: FeatureCache,
    image_size: int,
    prepare: Callable[[torch.Tensor], torch.Tensor],
    device: torch.device,
    dist: Distributed = SINGLE,
    what: str = "train",
    show_progress: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The frozen body's features of ``imageset`` (its images ``x``, labels ``y``): from the
    cache when an earlier run computed them, else computed — in a process group each process a
    contiguous share, gathered in order — and cached. Rank 0 decides hit or miss for the group,
    so every process takes the same path."""
    key = cache.key_for(model=model, image_size=image_size, device=device, imageset=imageset)
    hit = cache.get(key) if dist.is_main else None
    if dist.from_main(hit is not None):
        hit = hit or cache.get(key)
        if hit is not None:
            console.print(f"  [dim]features ({what}): {len(hit[0])} from the cache[/dim]")
            return hit
    lo, hi = (len(x) * dist.rank) // dist.world_size, (len(x) * (dist.rank + 1)) // dist.world_size
    out = extract_features(
        model, Batches(x[lo:hi], y[lo:hi], batch_size=128), prepare=prepare, device=device,
        description=f"features ({what})", show_progress=show_progress,
    )
    if dist.enabled:
        parts = dist.gather(out)
        out = (torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]))
    if dist.is_main:
        cache.put(key, *out)
    return out

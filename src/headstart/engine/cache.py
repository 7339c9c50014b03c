"""A disk cache of frozen-backbone features, keyed so that a stale entry is never used.

The key is a hash of everything the features depend on: the architecture and the exact values
of the frozen weights (not a file name), the preprocessing (mean, std, interpolation, input
size), and the images themselves (the pixel bytes of an in-memory set; the SHA-256 of each
file's bytes for a folder — taken while the files are checked, which reads them anyway — so an
edit that keeps a file's size and modification time still changes the key) with their labels.
Change any of them and the key changes. Entries are safetensors files written atomically; ``HEADSTART_CACHE`` moves the cache,
``HEADSTART_CACHE=off`` disables it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors.torch import load_file, save_file

from ..backbones import Backbone
from ..data.fingerprint import data_fingerprint, default_cache_dir, file_digest, imageset_fingerprint
from ..fileio import atomic_write

if TYPE_CHECKING:
    from ..data import ImageSet

__all__ = [
    "CACHE_VERSION", "FeatureCache", "data_fingerprint", "default_cache_dir", "file_digest", "imageset_fingerprint",
    "weights_fingerprint",
]

CACHE_VERSION = 2  # bump when the feature computation itself changes


def weights_fingerprint(model: Backbone) -> str:
    """Hash of the body's parameters and buffers (BatchNorm statistics included)."""
    h = hashlib.sha256(model.name.encode())
    for name, t in model.stages.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


class FeatureCache:
    """Pooled features per (weights, preprocessing, size, data) key; ``root=None`` disables it."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root
        self.hits = 0
        self.misses = 0

    def key(self, *, model: Backbone, image_size: int, data_id: str) -> str:
        parts = {
            "version": CACHE_VERSION,
            "weights": weights_fingerprint(model),
            "preprocess": model.preprocess.to_dict(),
            "image_size": image_size,
            "data": data_id,
        }
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]

    def key_for(self, *, model: Backbone, image_size: int, device: torch.device, imageset: "ImageSet") -> str:
        """The key of ``imageset``'s features: training and ``evaluate`` both ask here, so a set's
        features computed by one are found by the other."""
        return self.key(model=model, image_size=image_size, data_id=f"{device.type}:{imageset_fingerprint(imageset)}")

    def get(self, key: str) -> tuple[torch.Tensor, torch.Tensor] | None:
        if self.root is None:
            return None
        path = self.root / f"{key}.safetensors"
        if not path.is_file():
            self.misses += 1
            return None
        try:
            d = load_file(str(path))
        except Exception:  # noqa: BLE001 - a damaged entry is recomputed, never trusted
            path.unlink(missing_ok=True)
            self.misses += 1
            return None
        self.hits += 1
        return d["features"], d["labels"]

    def put(self, key: str, features: torch.Tensor, labels: torch.Tensor) -> None:
        if self.root is None:
            return
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            tensors = {"features": features.contiguous(), "labels": labels.contiguous()}
            atomic_write(self.root / f"{key}.safetensors", lambda tmp: save_file(tensors, tmp))
        except OSError:
            pass  # a read-only or full disk only costs the recomputation next time

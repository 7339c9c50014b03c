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
import os
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ..backbones import Backbone
from ..fileio import atomic_write

if TYPE_CHECKING:
    from ..data import ImageSet

CACHE_VERSION = 2  # bump when the feature computation itself changes


def default_cache_dir() -> Path | None:
    env = os.environ.get("HEADSTART_CACHE")
    if env and env.lower() in ("off", "0", "none", "false"):
        return None
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "headstart" / "features"


def weights_fingerprint(model: Backbone) -> str:
    """Hash of the body's parameters and buffers (BatchNorm statistics included)."""
    h = hashlib.sha256(model.name.encode())
    for name, t in model.stages.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def file_digest(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def data_fingerprint(
    images: list[str] | np.ndarray, labels: np.ndarray, digests: Sequence[str] | None = None
) -> str:
    """Hash of the content, in order, and the labels: the pixels of an array set, or the bytes
    of each file (``digests`` when the caller has them from decoding, else read here). Paths and
    modification times play no part: the same bytes give the same pixels."""
    h = hashlib.sha256()
    if isinstance(images, np.ndarray):
        h.update(str(images.shape).encode())
        h.update(np.ascontiguousarray(images).tobytes())
    else:
        if digests is None or len(digests) != len(images) or not all(digests):
            digests = [file_digest(p) for p in images]
        h.update(f"files:{len(images)}\n".encode())
        for d in digests:
            h.update(d.encode())
    h.update(np.ascontiguousarray(labels.astype(np.int64)).tobytes())
    return h.hexdigest()


def imageset_fingerprint(imageset: "ImageSet") -> str:
    """:func:`data_fingerprint` of an image set, using the digests taken when it was loaded."""
    return data_fingerprint(imageset.images, imageset.labels, imageset.digests)


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

"""Content fingerprints of data (pixels or file bytes, with labels), and where caches live.

``HEADSTART_CACHE`` moves the cache folder; ``HEADSTART_CACHE=off`` disables every disk cache
(features, decoded images, advice, audits).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:
    from .imageset import ImageSet


def default_cache_dir() -> Path | None:
    env = os.environ.get("HEADSTART_CACHE")
    if env and env.lower() in ("off", "0", "none", "false"):
        return None
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "headstart" / "features"


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

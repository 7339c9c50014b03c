"""A set's images as one uint8 tensor (N, 3, S, S), decoded once: in memory, or memory-mapped.

Training images are decoded once into one tensor (no JPEG decoding per epoch), held in memory
up to ``HEADSTART_MEMORY_BUDGET_MB`` (default 4096); a larger set is decoded into a
memory-mapped file instead, kept in the cache folder so the next run on the same files and
size skips decoding too.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from ..console import console
from ..errors import DataError
from ..fileio import atomic_write
from .fingerprint import default_cache_dir, imageset_fingerprint
from .imageset import ImageSet
from .torchdata import preload

PRELOAD_BUDGET_BYTES = int(os.environ.get("HEADSTART_MEMORY_BUDGET_MB", 4096)) * 1024**2


def images_tensor(imageset: ImageSet, *, size: int | None, num_workers: int) -> torch.Tensor:
    """All images of a set as uint8 (N, 3, S, S): arrays at native size, files decoded once at
    ``size`` — into memory, or into a memory-mapped file when larger than the memory budget."""
    if imageset.is_array or len(imageset) * 3 * int(size or 0) ** 2 <= PRELOAD_BUDGET_BYTES:
        return preload(imageset, size=size, num_workers=num_workers)
    assert size is not None
    cache = default_cache_dir()
    folder = Path(tempfile.gettempdir()) if cache is None else cache.parent / "decoded"
    folder.mkdir(parents=True, exist_ok=True)
    # without a cache the file is this process's own, removed once mapped
    path = folder / f"{imageset_fingerprint(imageset)[:32]}-{size}px{'' if cache else f'-{os.getpid()}'}.u8"
    shape = (len(imageset), 3, size, size)
    if cache is not None and path.is_file() and path.stat().st_size == math.prod(shape):
        console.print(f"  [dim]{len(imageset)} images at {size}px: decoded earlier, mapped from {path}[/dim]")
        return torch.from_file(str(path), shared=False, size=math.prod(shape), dtype=torch.uint8).view(shape)
    console.print(
        f"  [dim]{len(imageset)} images at {size}px exceed the memory budget "
        f"({PRELOAD_BUDGET_BYTES / 1024**3:.1f} GiB, HEADSTART_MEMORY_BUDGET_MB): decoding into {path}[/dim]"
    )
    decoded: list[torch.Tensor] = []  # the mapping follows its file through the rename
    atomic_write(path, lambda tmp: decoded.append(preload(imageset, size=size, num_workers=num_workers, into=Path(tmp))))
    out = decoded[0]
    if cache is None:
        path.unlink(missing_ok=True)  # the mapping stays valid until the tensor is freed; nothing is left behind
    return out


def align_classes(val: ImageSet, classes: list[str], source: str) -> ImageSet:
    """Re-index a separate validation set's labels onto the training classes."""
    unknown = sorted(set(val.classes) - set(classes))
    if unknown:
        raise DataError(f"validation data {source} has classes not in the training data: {unknown}")
    remap = np.array([classes.index(c) for c in val.classes], dtype=np.int64)
    return dataclasses.replace(val, labels=remap[val.labels], classes=list(classes))

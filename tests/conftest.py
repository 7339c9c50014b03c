"""Shared fixtures: tiny real image folders made on the fly, never downloaded."""

from __future__ import annotations

import io
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

os.environ["HF_HUB_OFFLINE"] = "1"


@pytest.fixture(scope="session", autouse=True)
def _private_feature_cache(tmp_path_factory):
    """Tests use their own feature cache, never the user's."""
    os.environ["HEADSTART_CACHE"] = str(tmp_path_factory.mktemp("feature-cache"))
torch.set_num_threads(min(2, os.cpu_count() or 1))


def _shape_image(kind: str, size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A bright disc, square or stripes on a noisy background: visually distinct classes."""
    h, w = size
    img = (rng.random((h, w, 3)) * 60).astype(np.uint8)
    yy, xx = np.mgrid[0:h, 0:w]
    cy, cx = h / 2 + rng.integers(-h // 8, h // 8 + 1), w / 2 + rng.integers(-w // 8, w // 8 + 1)
    r = min(h, w) * rng.uniform(0.25, 0.35)
    if kind == "disc":
        mask = (yy - cy) ** 2 + (xx - cx) ** 2 < r**2
        img[mask] = [230, 40, 40]
    elif kind == "square":
        mask = (abs(yy - cy) < r) & (abs(xx - cx) < r)
        img[mask] = [40, 220, 40]
    else:
        mask = ((xx // max(2, w // 8)) % 2) == 0
        img[mask] = [40, 40, 230]
    return img


@pytest.fixture(scope="session")
def shapes_folder(tmp_path_factory) -> Path:
    """3 classes x 10 images, mixed sizes and Pillow modes (RGB JPEG, RGBA PNG, L, P), one
    corrupt file: the kind of folder users bring."""
    root = tmp_path_factory.mktemp("shapes")
    rng = np.random.default_rng(0)
    for cls in ("disc", "square", "stripes"):
        d = root / cls
        d.mkdir()
        for i in range(10):
            size = (int(rng.integers(40, 90)), int(rng.integers(40, 90)))
            arr = _shape_image(cls, size, rng)
            img = Image.fromarray(arr)
            mode = i % 4
            if mode == 0:
                img.save(d / f"{i}.jpg", quality=92)
            elif mode == 1:
                img.convert("RGBA").save(d / f"{i}.png")
            elif mode == 2:
                img.convert("P").save(d / f"{i}.png")
            else:
                img.save(d / f"{i}.webp")
    (root / "disc" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return root


@pytest.fixture(scope="session")
def shapes_test_folder(tmp_path_factory) -> Path:
    """Fresh images of the same three classes for evaluation."""
    root = tmp_path_factory.mktemp("shapes_test")
    rng = np.random.default_rng(1)
    for cls in ("disc", "square", "stripes"):
        (root / cls).mkdir()
        for i in range(6):
            Image.fromarray(_shape_image(cls, (64, 64), rng)).save(root / cls / f"t{i}.png")
    return root


def _tiff(description: str = "headstart " * 8) -> bytearray:
    buf = io.BytesIO()
    img = Image.fromarray((np.arange(24 * 32 * 3) % 251).astype(np.uint8).reshape(24, 32, 3))
    img.save(buf, "TIFF", description=description)
    return bytearray(buf.getvalue())


def _patch_tag(data: bytearray, tag: int, *, count: int | None = None, value: int | None = None) -> bytearray:
    """Rewrite one IFD entry of a little-endian TIFF (tag, type, count, value/offset)."""
    assert data[:2] == b"II"
    ifd = struct.unpack_from("<I", data, 4)[0]
    for i in range(struct.unpack_from("<H", data, ifd)[0]):
        at = ifd + 2 + 12 * i
        if struct.unpack_from("<H", data, at)[0] == tag:
            if count is not None:
                struct.pack_into("<I", data, at + 4, count)
            if value is not None:
                kind = struct.unpack_from("<H", data, at + 2)[0]
                struct.pack_into("<H" if kind == 3 else "<I", data, at + 8, value)
            return data
    raise AssertionError(f"tag {tag} not in the file")


@pytest.fixture()
def odd_files(tmp_path):
    """A TIFF whose description tag claims more bytes than the file has (decodes, with a
    warning), the same with its pixel strip cut off (does not decode), and one whose samples per
    pixel Pillow refuses (it *logs* an error, which Python would print raw)."""
    warned = tmp_path / "warned.tif"
    warned.write_bytes(_patch_tag(_tiff(), 270, count=0x7FFFFFF0))
    cut = _patch_tag(_tiff(), 270, count=0x7FFFFFF0)
    broken = tmp_path / "broken.tif"
    broken.write_bytes(cut[: len(cut) // 3])
    logged = tmp_path / "logged.tif"
    logged.write_bytes(_patch_tag(_tiff(), 277, value=30000))
    return warned, broken, logged

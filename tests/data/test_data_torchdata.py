"""ImageDataset in DataLoader workers, transforms, and preload."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from headstart.data import ImageDataset, ImageSet, load_folder, preload


@pytest.fixture()
def folder_set(tmp_path):
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        for i in range(4):
            d = tmp_path / cls
            d.mkdir(exist_ok=True)
            size = (12 + i, 9)
            Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(
                d / f"{i}.png"
            )
    return load_folder(tmp_path)


def _array_set() -> ImageSet:
    images = np.arange(10 * 5 * 5, dtype=np.int64).reshape(10, 5, 5).astype(np.uint8)
    return ImageSet(images=images, labels=np.arange(10) % 2, classes=["x", "y"], name="arr")


def _flip(x: torch.Tensor) -> torch.Tensor:
    return x.flip(-1)


def test_dataloader_with_workers(folder_set):
    ds = ImageDataset(folder_set, size=8)
    loader = DataLoader(ds, batch_size=3, num_workers=2)
    xs, ys = zip(*loader)
    x = torch.cat(xs)
    y = torch.cat(ys)
    assert x.shape == (8, 3, 8, 8) and x.dtype == torch.uint8
    assert y.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert torch.equal(x, preload(folder_set, 8, num_workers=2))


def test_array_dataset_native_size_and_transform():
    s = _array_set()
    img, label = ImageDataset(s, size=None)[3]
    assert img.shape == (3, 5, 5) and label == 1
    assert torch.equal(img[0], torch.from_numpy(s.images[3]))
    flipped, _ = ImageDataset(s, size=None, transform=_flip)[3]
    assert torch.equal(flipped, img.flip(-1))
    resized, _ = ImageDataset(s, size=7)[0]
    assert resized.shape == (3, 7, 7)


def test_dataset_pickles():
    ds = ImageDataset(_array_set(), size=None, transform=_flip)
    clone = pickle.loads(pickle.dumps(ds))
    assert torch.equal(clone[2][0], ds[2][0])


def test_array_dataset_in_workers():
    loader = DataLoader(ImageDataset(_array_set(), size=None), batch_size=5, num_workers=2)
    assert [b[0].shape for b in loader] == [(5, 3, 5, 5), (5, 3, 5, 5)]


def test_preload_arrays():
    s = _array_set()
    native = preload(s, None)
    assert native.shape == (10, 3, 5, 5) and native.dtype == torch.uint8
    assert torch.equal(native[4, 2], torch.from_numpy(s.images[4]))
    resized = preload(s, 9)
    assert resized.shape == (10, 3, 9, 9)
    assert torch.equal(resized[1], ImageDataset(s, size=9)[1][0])


def test_preload_files(folder_set):
    serial = preload(folder_set, 6)
    assert serial.shape == (8, 3, 6, 6)
    assert torch.equal(serial, preload(folder_set, 6, num_workers=3))
    with pytest.raises(ValueError):
        preload(folder_set, None)

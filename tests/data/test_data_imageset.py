"""ImageSet behaviour and check_trainable messages."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from headstart.data import ImageSet, check_trainable
from headstart.errors import DataError


def _array_set(n=6, gray=True) -> ImageSet:
    shape = (n, 4, 4) if gray else (n, 4, 4, 3)
    images = (np.arange(np.prod(shape)) % 256).astype(np.uint8).reshape(shape)
    return ImageSet(images=images, labels=np.arange(n) % 3, classes=["a", "b", "c"], name="toy")


def test_array_set_basics():
    s = _array_set()
    assert len(s) == 6 and s.is_array and s.native_size == 4
    assert s.class_counts().tolist() == [2, 2, 2]
    rgb = s.get_rgb(1, None)
    assert rgb.shape == (4, 4, 3) and rgb.dtype == np.uint8
    assert (rgb[..., 0] == s.images[1]).all() and (rgb[..., 2] == s.images[1]).all()
    big = s.get_rgb(1, 8)
    assert big.shape == (8, 8, 3)


def test_rgb_array_resize():
    s = _array_set(gray=False)
    assert s.get_rgb(0, None).shape == (4, 4, 3)
    assert s.get_rgb(0, 2).shape == (2, 2, 3)
    flat = ImageSet(
        images=np.full((1, 3, 3, 3), 90, np.uint8), labels=[0], classes=["a"], name="x"
    )
    assert (flat.get_rgb(0, 6) == 90).all()


def test_subset_keeps_classes_and_name():
    s = _array_set()
    sub = s.subset([0, 3])
    assert len(sub) == 2 and sub.classes == s.classes and sub.name == "toy"
    assert sub.labels.tolist() == [0, 0]
    assert sub.class_counts().tolist() == [2, 0, 0]
    assert (sub.images[1] == s.images[3]).all()


def test_path_set(tmp_path):
    paths = []
    for i, size in enumerate([(10, 6), (6, 10)]):
        p = tmp_path / f"{i}.png"
        Image.new("RGB", size, (i * 50, 0, 0)).save(p)
        paths.append(p)
    s = ImageSet(images=paths, labels=np.array([0, 1]), classes=["x", "y"], name="files")
    assert not s.is_array and s.native_size is None
    assert all(isinstance(p, str) for p in s.images)
    assert s.get_rgb(0, None).shape == (6, 10, 3)
    assert s.get_rgb(1, 5).shape == (5, 5, 3)
    assert s.subset([1]).images == [str(paths[1])]


def test_unlabeled_not_counted():
    s = ImageSet(
        images=np.zeros((3, 2, 2), np.uint8), labels=[0, -1, 1], classes=["a", "b"], name="m"
    )
    assert s.class_counts().tolist() == [1, 1]


def test_length_mismatch_refused():
    with pytest.raises(ValueError):
        ImageSet(images=np.zeros((3, 2, 2), np.uint8), labels=[0, 1], classes=["a"], name="m")


def test_check_trainable_ok():
    check_trainable(_array_set())


def test_check_trainable_single_class(tmp_path):
    s = ImageSet(images=np.zeros((2, 2, 2), np.uint8), labels=[0, 0], classes=["cats"], name="n",
                 root=str(tmp_path))
    with pytest.raises(DataError, match=r"found only class 'cats' in .*at least two class folders"):
        check_trainable(s)


def test_check_trainable_empty_class_named(tmp_path):
    s = ImageSet(images=np.zeros((2, 2, 2), np.uint8), labels=[0, 0], classes=["cats", "dogs"],
                 name="n", root=str(tmp_path))
    with pytest.raises(DataError) as info:
        check_trainable(s)
    assert str(tmp_path / "dogs") in str(info.value)


def test_check_trainable_no_images():
    s = ImageSet(images=[], labels=np.zeros(0, np.int64), classes=["a", "b"], name="nothing")
    with pytest.raises(DataError, match="no images"):
        check_trainable(s)

"""Folder, CSV, unlabeled and built-in loaders, and resolve()."""

from __future__ import annotations

import gzip
import os

import numpy as np
import pytest
from PIL import Image

from headstart.data import (
    BUILTIN_DATASETS,
    check_trainable,
    load_csv,
    load_folder,
    load_unlabeled,
    resolve,
    sources,
)
from headstart.data._progress import map_with_progress
from headstart.data.sources import IDX_MAGIC_IMAGES, IDX_MAGIC_LABELS, read_idx
from headstart.errors import DataError


def _img(path, colour=(0, 0, 0), size=(6, 5)) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return str(path)


@pytest.fixture()
def tree(tmp_path):
    root = tmp_path / "ds"
    _img(root / "cat" / "a.png")
    _img(root / "cat" / "b.JPG")
    _img(root / "cat" / "nested" / "c.png")
    _img(root / "dog" / "d.png")
    _img(root / "dog" / ".hidden.png")
    _img(root / ".cache" / "e.png")
    (root / "dog" / "README.txt").write_text("not an image")
    (root / "notes.md").write_text("layout notes")
    return root


def test_load_folder(tree):
    s = load_folder(tree)
    assert s.classes == ["cat", "dog"]
    assert s.labels.tolist() == [0, 0, 0, 1]
    assert [os.path.basename(p) for p in s.images] == ["a.png", "b.JPG", "c.png", "d.png"]
    assert s.skipped == [] and s.root == str(tree)
    check_trainable(s)


def _bad_files(root):
    (root / "dog" / "zero.png").write_bytes(b"")
    (root / "dog" / "text.jpg").write_text("hello")


def test_bad_images_skipped(tree):
    _bad_files(tree)
    s = load_folder(tree, on_bad_image="skip")
    assert len(s) == 4
    skipped = dict(s.skipped)
    assert set(skipped) == {str(tree / "dog" / "text.jpg"), str(tree / "dog" / "zero.png")}
    assert "empty" in skipped[str(tree / "dog" / "zero.png")]


def test_bad_images_error(tree):
    _bad_files(tree)
    with pytest.raises(DataError) as info:
        load_folder(tree, on_bad_image="error")
    msg = str(info.value)
    assert str(tree / "dog" / "zero.png") in msg and str(tree / "dog" / "text.jpg") in msg
    assert "--on-bad-image skip" in msg


def test_no_validate_does_not_decode(tree):
    _bad_files(tree)
    s = load_folder(tree, validate=False)
    assert len(s) == 6 and s.skipped == []


def test_empty_class_folder(tree):
    (tree / "empty").mkdir()
    (tree / "empty" / "x.txt").write_text("")
    with pytest.raises(DataError) as info:
        load_folder(tree)
    assert str(tree / "empty") in str(info.value)


def test_class_folder_all_bad(tree):
    (tree / "broken").mkdir()
    (tree / "broken" / "x.png").write_bytes(b"")
    with pytest.raises(DataError) as info:
        load_folder(tree)
    assert str(tree / "broken") in str(info.value)


def test_single_class(tmp_path):
    _img(tmp_path / "only" / "a.png")
    s = load_folder(tmp_path)
    with pytest.raises(DataError, match=r"found only class 'only'.*at least two class folders"):
        check_trainable(s)


def test_images_in_root(tmp_path):
    _img(tmp_path / "a.png")
    _img(tmp_path / "cls" / "b.png")
    with pytest.raises(DataError, match=r"root/<class>/<image>") as info:
        load_folder(tmp_path)
    assert "a.png" in str(info.value)


def test_missing_and_empty_root(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_folder(tmp_path / "nope")
    with pytest.raises(DataError, match="no class folders"):
        load_folder(tmp_path)


def test_bad_on_bad_image_value(tree):
    with pytest.raises(ValueError):
        load_folder(tree, on_bad_image="ignore")


def test_progress_bar_path_many_files():
    out = map_with_progress(lambda x: x * 2, list(range(250)), description="t", num_workers=2)
    assert out == [x * 2 for x in range(250)]


def test_load_csv_relative_paths(tmp_path):
    _img(tmp_path / "imgs" / "a.png")
    _img(tmp_path / "imgs" / "b.png")
    _img(tmp_path / "imgs" / "c.png")
    csv = tmp_path / "labels.csv"
    csv.write_text("path,label,extra\nimgs/a.png,zebra,1\nimgs/b.png,ant,2\n\nimgs/c.png,zebra,3\n")
    s = load_csv(csv)
    assert s.classes == ["ant", "zebra"]
    assert s.labels.tolist() == [1, 0, 1]
    assert s.images[0] == str(tmp_path / "imgs" / "a.png")

    other = tmp_path / "elsewhere"
    other.mkdir()
    moved = other / "l.csv"
    moved.write_text("path,label\na.png,x\nb.png,y\n")
    s2 = load_csv(moved, root=tmp_path / "imgs")
    assert s2.images == [str(tmp_path / "imgs" / "a.png"), str(tmp_path / "imgs" / "b.png")]


def test_load_csv_missing_file(tmp_path):
    _img(tmp_path / "a.png")
    _img(tmp_path / "c.png")
    csv = tmp_path / "l.csv"
    csv.write_text("path,label\na.png,x\ngone.png,x\nc.png,y\n")
    s = load_csv(csv)
    assert len(s) == 2
    assert s.skipped == [(str(tmp_path / "gone.png"), "file not found")]
    assert load_csv(csv, validate=False).skipped == [(str(tmp_path / "gone.png"), "file not found")]
    with pytest.raises(DataError, match="gone.png: file not found"):
        load_csv(csv, on_bad_image="error")


def test_load_csv_missing_columns(tmp_path):
    csv = tmp_path / "bad.csv"
    csv.write_text("file,class\na.png,x\n")
    with pytest.raises(DataError) as info:
        load_csv(csv)
    assert str(csv) in str(info.value) and "path,label" in str(info.value)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataError, match="path,label"):
        load_csv(empty)


def test_load_unlabeled(tree):
    (tree / "bad.png").write_bytes(b"")
    s = load_unlabeled(tree)
    assert len(s) == 4 and s.classes == []
    assert (s.labels == -1).all()
    assert [p for p, _ in s.skipped] == [str(tree / "bad.png")]
    void = tree.parent / "void"
    void.mkdir()
    with pytest.raises(DataError, match="no images"):
        load_unlabeled(void)


# ---- built-in datasets ---------------------------------------------------------------------


def _write_idx(path, array: np.ndarray, magic: int) -> None:
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture()
def tiny_fmnist(tmp_path):
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 12), ("t10k", 5)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = np.arange(n) % 10
        _write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", images, IDX_MAGIC_IMAGES)
        _write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", labels, IDX_MAGIC_LABELS)
    return tmp_path


def test_read_idx_roundtrip(tmp_path):
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    _write_idx(tmp_path / "x.gz", arr, IDX_MAGIC_IMAGES)
    assert np.array_equal(read_idx(tmp_path / "x.gz", expected_magic=IDX_MAGIC_IMAGES), arr)
    with pytest.raises(DataError, match=r"x\.gz.*magic number 0x00000803, expected 0x00000801"):
        read_idx(tmp_path / "x.gz", expected_magic=IDX_MAGIC_LABELS)
    with gzip.open(tmp_path / "short.gz", "wb") as fh:
        fh.write(IDX_MAGIC_LABELS.to_bytes(4, "big") + (10).to_bytes(4, "big") + b"\x01\x02")
    with pytest.raises(DataError, match=r"short\.gz is truncated"):
        read_idx(tmp_path / "short.gz")


def test_fashion_mnist_tiny(tiny_fmnist):
    train = resolve(f"fashion-mnist:{tiny_fmnist}")
    test = BUILTIN_DATASETS.get("fashion-mnist")(split="test", root=str(tiny_fmnist))
    assert train.images.shape == (12, 28, 28) and train.images.dtype == np.uint8
    assert len(test) == 5 and test.labels.tolist() == [0, 1, 2, 3, 4]
    assert train.classes[0] == "T-shirt/top" and train.classes[9] == "Ankle boot"
    assert train.native_size == 28 and train.name == "fashion-mnist"


def test_fashion_mnist_env_var(tiny_fmnist, monkeypatch):
    monkeypatch.setenv("HEADSTART_FASHION_MNIST", str(tiny_fmnist))
    assert len(resolve("fashion-mnist", split="test")) == 5


def test_fashion_mnist_wrong_magic(tiny_fmnist):
    bad = tiny_fmnist / "t10k-labels-idx1-ubyte.gz"
    _write_idx(bad, np.zeros((5, 2, 2), np.uint8), IDX_MAGIC_IMAGES)
    with pytest.raises(DataError) as info:
        resolve(f"fashion-mnist:{tiny_fmnist}", split="test")
    assert str(bad) in str(info.value)


def test_fashion_mnist_missing(tmp_path):
    with pytest.raises(DataError) as info:
        resolve(f"fashion-mnist:{tmp_path}")
    msg = str(info.value)
    assert "apt-get install dataset-fashion-mnist" in msg and "fashion-mnist:/path/to/dir" in msg


REAL_FMNIST = sources.FASHION_MNIST_DIR


@pytest.mark.skipif(
    not os.path.isfile(os.path.join(REAL_FMNIST, "train-images-idx3-ubyte.gz")),
    reason="dataset-fashion-mnist is not installed",
)
def test_fashion_mnist_real_files():
    train = BUILTIN_DATASETS.get("fashion-mnist")(split="train", root=REAL_FMNIST)
    test = BUILTIN_DATASETS.get("fashion-mnist")(split="test", root=REAL_FMNIST)
    assert train.images.shape == (60000, 28, 28) and test.images.shape == (10000, 28, 28)
    assert train.class_counts().tolist() == [6000] * 10
    assert test.class_counts().tolist() == [1000] * 10


def test_digits_split():
    train = resolve("digits")
    test = resolve("digits", split="test")
    assert (len(train), len(test)) == (1346, 451)
    assert train.images.shape[1:] == (8, 8) and train.images.dtype == np.uint8
    assert train.images.max() == 255 and train.classes == [str(d) for d in range(10)]
    total = train.class_counts() + test.class_counts()
    share = test.class_counts() / total
    assert np.all(np.abs(share - 0.25) < 0.01)
    again = resolve("digits", split="test")
    assert np.array_equal(again.images, test.images) and np.array_equal(again.labels, test.labels)
    train_rows = {r.tobytes() + bytes([lab]) for r, lab in zip(train.images, train.labels)}
    test_rows = {r.tobytes() + bytes([lab]) for r, lab in zip(test.images, test.labels)}
    assert not train_rows & test_rows


def test_bad_split():
    with pytest.raises(DataError, match="train, test"):
        resolve("digits", split="val")


# ---- resolve ---------------------------------------------------------------------------------


def test_resolve_paths(tree, tmp_path):
    assert resolve(str(tree)).classes == ["cat", "dog"]
    csv = tmp_path / "x.csv"
    csv.write_text(f"path,label\n{tree / 'cat' / 'a.png'},c\n")
    assert len(resolve(str(csv))) == 1


def test_resolve_unknown(tmp_path):
    with pytest.raises(DataError) as info:
        resolve(str(tmp_path / "nowhere"))
    msg = str(info.value)
    assert "digits" in msg and "fashion-mnist" in msg and "root/<class>/<image>" in msg

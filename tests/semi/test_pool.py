"""The unlabeled pool: read from a folder or the few-label split, bad files skipped and named,
duplicates of labeled and evaluation images found by content and dropped (or kept with
--transductive), hidden labels kept apart from training."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from headstart.data import resolve
from headstart.data.imageset import ImageSet
from headstart.errors import ConfigError, DataError
from headstart.semi.pool import POOL, content_hashes, read_pool


def _read(spec, labeled, *, evaluation=(), full=None, pool_idx=None, **kw):
    full = full if full is not None else labeled
    pool_idx = pool_idx if pool_idx is not None else np.array([], dtype=np.int64)
    return read_pool(spec, full=full, pool_idx=pool_idx, labeled=labeled, evaluation=list(evaluation), data_spec="data", **kw)


def _fresh_folder(root, n=6, seed=3):
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray((rng.random((20, 20, 3)) * 255).astype(np.uint8)).save(root / f"f{i}.png")
    return root


def test_content_hashes_tell_equal_pixels_of_arrays_and_files_apart_from_different_ones(tmp_path):
    arr = np.zeros((3, 4, 4), dtype=np.uint8)
    arr[2, 0, 0] = 1
    hs = content_hashes(ImageSet(images=arr, labels=np.zeros(3), classes=["a"], name="x"))
    assert hs[0] == hs[1] != hs[2]
    folder = _fresh_folder(tmp_path / "f", n=2)
    shutil.copy(folder / "f0.png", folder / "copy.png")
    files = sorted(str(p) for p in folder.iterdir())
    fh = content_hashes(ImageSet(images=files, labels=np.zeros(3), classes=["a"], name="x"))
    by_name = dict(zip([p.rsplit("/", 1)[1] for p in files], fh))
    assert by_name["copy.png"] == by_name["f0.png"] != by_name["f1.png"]


def test_a_folder_pool_drops_labeled_and_evaluation_duplicates_and_names_the_bad_files(shapes_folder, shapes_test_folder, tmp_path):
    labeled = resolve(str(shapes_folder))
    test = resolve(str(shapes_test_folder))
    pool_dir = _fresh_folder(tmp_path / "pool" / "nested", n=5)
    shutil.copy(next((shapes_folder / "square").glob("*.jpg")), tmp_path / "pool" / "dup_labeled.jpg")
    shutil.copy(next((shapes_test_folder / "disc").glob("*.png")), pool_dir / "dup_test.png")
    (tmp_path / "pool" / "broken.png").write_bytes(b"\x89PNG not a png")
    pool = _read(str(tmp_path / "pool"), labeled, evaluation=[test])
    assert pool.found == 7 and len(pool) == 5  # 5 fresh images kept of 7 readable
    assert pool.labeled_duplicates == 1 and pool.eval_duplicates == 1 and not pool.eval_duplicates_kept
    assert [p for p, _ in pool.images.skipped] == [str(tmp_path / "pool" / "broken.png")]
    assert all("dup" not in p for p in pool.images.images)
    assert (pool.images.labels == -1).all()
    kept = _read(str(tmp_path / "pool"), labeled, evaluation=[test], transductive=True)
    assert len(kept) == 6 and kept.eval_duplicates_kept and any("dup_test" in p for p in kept.images.images)


def test_class_subfolders_of_the_pool_are_hidden_truth_never_labels(shapes_folder, tmp_path):
    labeled = resolve(str(shapes_folder))
    for cls in ("disc", "stripes", "unknown"):
        _fresh_folder(tmp_path / "pool" / cls, n=2, seed=hash(cls) % 100)
    pool = _read(str(tmp_path / "pool"), labeled)
    assert (pool.images.labels == -1).all()
    names = [p.split("/")[-2] for p in pool.images.images]
    expected = [labeled.classes.index(n) if n in labeled.classes else -1 for n in names]
    assert pool.truth.tolist() == expected and pool.has_truth


def test_the_built_in_pool_hides_its_labels_and_a_limit_is_a_seeded_draw():
    full = resolve("digits")
    from headstart.data.splits import few_shot

    lab, rest = few_shot(full.labels, 5, 0)
    pool = _read(POOL, full.subset(lab), full=full, pool_idx=rest)
    assert len(pool) == len(rest) and (pool.images.labels == -1).all()
    assert np.array_equal(pool.truth, full.labels[rest])  # kept apart, for scoring only
    a = _read(POOL, full.subset(lab), full=full, pool_idx=rest, limit=100, seed=1)
    b = _read(POOL, full.subset(lab), full=full, pool_idx=rest, limit=100, seed=1)
    c = _read(POOL, full.subset(lab), full=full, pool_idx=rest, limit=100, seed=2)
    assert len(a) == 100 and np.array_equal(a.images.images, b.images.images) and not np.array_equal(a.images.images, c.images.images)


def test_planted_duplicates_in_an_array_pool_are_found_as_a_naive_pixel_comparison_finds_them():
    import dataclasses

    from headstart.data.splits import few_shot

    full, test = resolve("digits"), resolve("digits", split="test")
    lab, rest = few_shot(full.labels, 5, 0)
    images = full.images.copy()
    images[rest[:7]] = test.images[:7]  # 7 pool images that are test images
    images[rest[7:10]] = full.images[lab[:3]]  # 3 that are labeled images
    full = dataclasses.replace(full, images=images)
    pool = _read(POOL, full.subset(lab), full=full, pool_idx=rest, evaluation=[test])
    lab_px = {full.images[i].tobytes() for i in lab}
    test_px = {im.tobytes() for im in test.images}
    naive_lab = sum(full.images[i].tobytes() in lab_px for i in rest)
    naive_eval = sum(full.images[i].tobytes() in test_px and full.images[i].tobytes() not in lab_px for i in rest)
    assert naive_lab >= 3 and naive_eval >= 7
    assert pool.labeled_duplicates == naive_lab and pool.eval_duplicates == naive_eval
    assert len(pool) == len(rest) - naive_lab - naive_eval
    kept = {im.tobytes() for im in pool.images.images}
    assert not kept & (lab_px | test_px)


def test_bad_pools_are_clear_errors(shapes_folder, tmp_path):
    labeled = resolve(str(shapes_folder))
    with pytest.raises(ConfigError, match="--labels-per-class K"):
        _read(POOL, labeled)
    with pytest.raises(DataError, match="does not exist"):
        _read(str(tmp_path / "missing"), labeled)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="no images in"):
        _read(str(tmp_path / "empty"), labeled)
    with pytest.raises(DataError, match="is also a labeled or evaluation image"):
        _read(str(shapes_folder), labeled)

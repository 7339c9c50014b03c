"""The feature cache: exact keys (a change anywhere misses), and reuse across runs."""

from __future__ import annotations

import json
import os

import numpy as np
import torch
from safetensors.torch import load_file

from headstart import TrainConfig, train
from headstart.backbones import create_backbone
from headstart.engine.cache import FeatureCache, data_fingerprint, default_cache_dir


def test_keys_change_with_everything_the_features_depend_on(tmp_path):
    cache = FeatureCache(tmp_path)
    model = create_backbone("resnet18", num_classes=2, weights=None)
    imgs = np.zeros((4, 8, 8), dtype=np.uint8)
    labels = np.array([0, 1, 0, 1])
    base = cache.key(model=model, image_size=64, data_id=data_fingerprint(imgs, labels))
    assert base == cache.key(model=model, image_size=64, data_id=data_fingerprint(imgs.copy(), labels.copy()))
    assert base != cache.key(model=model, image_size=96, data_id=data_fingerprint(imgs, labels))
    other = imgs.copy()
    other[2, 3, 3] = 1
    assert base != cache.key(model=model, image_size=64, data_id=data_fingerprint(other, labels))
    assert base != cache.key(model=model, image_size=64, data_id=data_fingerprint(imgs, labels[::-1].copy()))
    with torch.no_grad():
        model.stages[2][0].bn1.running_mean[0] += 1e-3  # a BatchNorm statistic alone changes features
    assert base != cache.key(model=model, image_size=64, data_id=data_fingerprint(imgs, labels))
    # the head is not part of the features
    model.reset_head(5)
    feats, labs = torch.randn(4, 3), torch.tensor([0, 1, 0, 1])
    cache.put(base, feats, labs)
    got = cache.get(base)
    assert got is not None and torch.equal(got[0], feats) and torch.equal(got[1], labs)
    assert FeatureCache(None).get(base) is None


def test_file_fingerprint_is_the_content_not_the_path_or_time(tmp_path):
    f = tmp_path / "a.png"
    f.write_bytes(b"xy")
    a = data_fingerprint([str(f)], np.array([0]))
    os.utime(f, ns=(1, 1))
    assert a == data_fingerprint([str(f)], np.array([0]))  # touched, same bytes: same features
    g = tmp_path / "copy.png"
    g.write_bytes(b"xy")
    assert a == data_fingerprint([str(g)], np.array([0]))
    f.write_bytes(b"xz")
    os.utime(f, ns=(1, 1))
    assert a != data_fingerprint([str(f)], np.array([0]))  # same size and time, other bytes
    assert data_fingerprint([str(f)], np.array([0]), ["d1"]) != data_fingerprint([str(f)], np.array([0]), ["d2"])
    assert data_fingerprint([str(f), str(g)], np.array([0, 0])) != data_fingerprint([str(g), str(f)], np.array([0, 0]))


def _bmp_folder(root):
    """BMP files: uncompressed, so a pixel can change while the file keeps its size."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for c, cls in enumerate(("a", "b")):
        (root / cls).mkdir(parents=True)
        for i in range(6):
            arr = (rng.random((24, 24, 3)) * 80).astype(np.uint8)
            arr[6:18, 6:18, c] = 230
            Image.fromarray(arr).save(root / cls / f"{i}.bmp")
    return root


def _edit_keeping_size_and_time(path):
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[-40] ^= 0xFF  # one pixel's byte
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size and path.stat().st_mtime_ns == st.st_mtime_ns


def test_an_edit_that_keeps_size_and_mtime_misses_every_cache(tmp_path, monkeypatch, capsys):
    """The feature cache, the memory-mapped decoded images and the cached advice are keyed by
    the files' bytes: `cp -p`, `rsync -t` and tools that restore times cannot serve stale data."""
    from headstart import api

    monkeypatch.setenv("HEADSTART_CACHE", str(tmp_path / "cache" / "features"))
    monkeypatch.setattr("headstart.data.tensors.PRELOAD_BUDGET_BYTES", 1000)  # decoded images go to a mapped file
    data = _bmp_folder(tmp_path / "data")
    cfg = dict(data=str(data), strategy="linear", image_size=32, epochs=2, device="cpu", progress=False, overwrite=True)

    def linear() -> dict:
        res = train(TrainConfig(output=str(tmp_path / "run"), **cfg))
        return json.loads((res.run_dir / "metrics.json").read_text())["feature_cache"]

    def advise() -> str:
        capsys.readouterr()
        api.advise(str(data), device="cpu", image_size=32)
        return capsys.readouterr().err

    decoded = tmp_path / "cache" / "decoded"
    assert linear() == {"hits": 0, "misses": 1}
    assert linear() == {"hits": 1, "misses": 0}
    assert len(list(decoded.glob("*-32px.u8"))) == 1
    assert "measured earlier" not in advise()
    assert "measured earlier" in advise()
    assert len(list((tmp_path / "cache" / "advice").glob("*.json"))) == 1

    _edit_keeping_size_and_time(data / "b" / "3.bmp")
    assert linear() == {"hits": 0, "misses": 1}
    assert len(list(decoded.glob("*-32px.u8"))) == 2  # decoded anew, not mapped from the old file
    assert "measured earlier" not in advise()
    assert len(list((tmp_path / "cache" / "advice").glob("*.json"))) == 2


def test_second_linear_probe_reuses_features_and_trains_identically(shapes_folder, tmp_path, monkeypatch):
    monkeypatch.setenv("HEADSTART_CACHE", str(tmp_path / "cache"))  # empty: the first run must miss
    runs = []
    for name in ("a", "b"):
        res = train(TrainConfig(data=str(shapes_folder), output=str(tmp_path / name), strategy="linear", image_size=40, epochs=5, device="cpu", progress=False))
        runs.append(json.loads((res.run_dir / "metrics.json").read_text())["feature_cache"])
    assert runs[0]["misses"] == 1 and runs[0]["hits"] == 0
    assert runs[1]["hits"] == 1 and runs[1]["misses"] == 0
    a, b = load_file(str(tmp_path / "a" / "model.safetensors")), load_file(str(tmp_path / "b" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    res = train(TrainConfig(data=str(shapes_folder), output=str(tmp_path / "c"), strategy="linear", image_size=48, epochs=5, device="cpu", progress=False))
    assert json.loads((res.run_dir / "metrics.json").read_text())["feature_cache"]["misses"] == 1  # new size, new key


def test_cache_can_be_switched_off(shapes_folder, tmp_path, monkeypatch):
    monkeypatch.setenv("HEADSTART_CACHE", "off")
    res = train(TrainConfig(data=str(shapes_folder), output=str(tmp_path / "o"), strategy="knn", image_size=40, device="cpu", progress=False))
    assert json.loads((res.run_dir / "metrics.json").read_text())["feature_cache"] == {"hits": 0, "misses": 0}


def test_sets_over_the_memory_budget_train_from_a_mapped_file_identically(shapes_folder, tmp_path, monkeypatch, capsys):
    cfg = dict(data=str(shapes_folder), strategy="partial", image_size=40, epochs=2, batch_size=8, device="cpu", progress=False)
    train(TrainConfig(output=str(tmp_path / "memory"), **cfg))
    monkeypatch.setattr("headstart.data.tensors.PRELOAD_BUDGET_BYTES", 1000)  # every folder is now "too big for memory"
    capsys.readouterr()
    train(TrainConfig(output=str(tmp_path / "mapped"), **cfg))
    assert "decoding into" in capsys.readouterr().err
    decoded = list((default_cache_dir().parent / "decoded").glob("*-40px.u8"))
    assert len(decoded) == 1 and decoded[0].stat().st_size == 30 * 3 * 40 * 40  # the 30 readable images
    assert not list(decoded[0].parent.glob(".*.tmp"))
    a, b = load_file(str(tmp_path / "memory" / "model.safetensors")), load_file(str(tmp_path / "mapped" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)  # the same pixels, the same run
    train(TrainConfig(output=str(tmp_path / "again"), **cfg))
    assert "decoded earlier, mapped from" in capsys.readouterr().err
    c = load_file(str(tmp_path / "again" / "model.safetensors"))
    assert all(torch.equal(a[k], c[k]) for k in a)


def test_frozen_body_runs_share_one_pass_over_the_images_they_score(shapes_folder, shapes_test_folder, tmp_path, monkeypatch):
    """kNN and linear-probe runs on the same weights score through the feature cache: the first
    evaluation computes the test features, the second only runs its head, and both give the
    probabilities of the plain forward pass."""
    from headstart import api, evaluate
    from headstart.data import resolve

    monkeypatch.setenv("HEADSTART_CACHE", str(tmp_path / "cache"))
    runs = {}
    for strategy in ("knn", "linear", "partial"):
        runs[strategy] = train(TrainConfig(data=str(shapes_folder), output=str(tmp_path / strategy), strategy=strategy,
                                           image_size=40, epochs=2, device="cpu", progress=False)).run_dir
    first = evaluate(runs["knn"], str(shapes_test_folder), device="cpu")
    second = evaluate(runs["linear"], str(shapes_test_folder), device="cpu")
    assert first["feature_cache"] == {"hits": 0, "misses": 1}
    assert second["feature_cache"] == {"hits": 1, "misses": 0}
    assert evaluate(runs["partial"], str(shapes_test_folder), device="cpu")["feature_cache"] is None  # its body trained
    test = resolve(str(shapes_test_folder))
    for strategy in ("knn", "linear"):
        predictor = api.Predictor(runs[strategy], device="cpu")
        cached = predictor.proba_imageset(test, share_features=True)
        assert predictor.feature_cache == {"hits": 1, "misses": 0}
        predictor.feature_cache = None
        predictor.proba_imageset(test)  # predict_proba's path: the cache is left alone
        assert predictor.feature_cache is None
        plain = predictor.proba_tensor(predictor.images_of(test))  # the whole network, image by image batch
        np.testing.assert_allclose(cached, plain, rtol=1e-5, atol=1e-6)
    monkeypatch.setenv("HEADSTART_CACHE", "off")
    off = evaluate(runs["linear"], str(shapes_test_folder), device="cpu")
    assert off["feature_cache"] is None and off["confusion_matrix"] == second["confusion_matrix"]

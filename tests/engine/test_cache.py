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


def test_file_fingerprint_sees_a_changed_file(tmp_path):
    f = tmp_path / "a.png"
    f.write_bytes(b"x")
    a = data_fingerprint([str(f)], np.array([0]))
    os.utime(f, ns=(1, 1))
    assert a != data_fingerprint([str(f)], np.array([0]))


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
    from headstart import api

    cfg = dict(data=str(shapes_folder), strategy="partial", image_size=40, epochs=2, batch_size=8, device="cpu", progress=False)
    train(TrainConfig(output=str(tmp_path / "memory"), **cfg))
    monkeypatch.setattr(api, "PRELOAD_BUDGET_BYTES", 1000)  # every folder is now "too big for memory"
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

"""The teacher's pass over the pool through onnxruntime: PyTorch's probabilities to float rounding
(Lite0 with frozen stages and a small ResNet; native-size images resized per batch as the eager
pass does), its graph exported once per weights, and the eager pass taken — with the same
answers — when the graph disagrees, cannot be read, the run is an ensemble, or the user says
``HEADSTART_TEACHER_ENGINE=torch``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from headstart import TrainConfig, train
from headstart.data.tensors import images_tensor
from headstart.export import passes
from headstart.predictor import Predictor


@pytest.fixture(scope="module")
def runs(shapes_folder, tmp_path_factory):
    root = tmp_path_factory.mktemp("passes")
    lite = train(TrainConfig(data=str(shapes_folder), output=str(root / "lite"), strategy="partial", freeze_stages=5, epochs=1,
                             image_size=48, progress=False, device="cpu"))
    small = train(TrainConfig(data=str(shapes_folder), output=str(root / "small"), backbone="resnet_small", strategy="full", epochs=2,
                              image_size=40, progress=False, device="cpu"))
    return lite.run_dir, small.run_dir


@pytest.fixture(scope="module")
def pool(shapes_folder):
    """Native-size uint8 images, more than one check batch and a ragged last batch (as the pool is stored)."""
    from headstart.data import load_unlabeled

    x = images_tensor(load_unlabeled(str(shapes_folder)), size=24, num_workers=0)
    g = torch.Generator().manual_seed(0)
    noisy = (x.repeat(4, 1, 1, 1).to(torch.int16) + torch.randint(-30, 31, (4 * len(x), *x.shape[1:]), generator=g)).clamp(0, 255)
    return noisy.to(torch.uint8)[: passes.CHECK_IMAGES + 2 * passes.BATCH + 5]


@pytest.mark.parametrize("which", [0, 1])
def test_the_onnxruntime_pass_gives_pytorchs_probabilities(runs, pool, which, tmp_path):
    run = runs[which]
    p = Predictor(run, device="cpu")
    eager = p.proba_tensor(pool, batch_size=256)
    got, engine = passes.proba(p, pool, tmp_path / "tables")
    assert engine == "onnxruntime" and got.shape == eager.shape == (len(pool), 3)
    np.testing.assert_allclose(got, eager, atol=passes.MAX_DIFF, rtol=0)
    assert np.abs(got[passes.CHECK_IMAGES :] - eager[passes.CHECK_IMAGES :]).max() > 0  # the graph's answers past the check, not PyTorch's
    graphs = list((tmp_path / "tables").glob("network-*.onnx"))
    assert len(graphs) == 1
    stamp = graphs[0].stat().st_mtime_ns
    passes.proba(p, pool, tmp_path / "tables")
    assert graphs[0].stat().st_mtime_ns == stamp, "the graph was exported again for the same weights"


def test_a_graph_that_disagrees_gives_way_to_pytorch(runs, pool, tmp_path):
    lite, small = runs
    p = Predictor(lite, device="cpu")
    want = p.proba_tensor(pool, batch_size=256)
    other = Predictor(lite, device="cpu")
    with torch.no_grad():
        for w in other.model.parameters():
            w.mul_(1.05)  # the same network, other weights, saved under this run's name
    folder = tmp_path / "tables"
    passes.graph_for(other, folder)
    got, engine = passes.proba(p, pool, folder)
    assert engine == "onnxruntime"  # the graph loaded; its first batch disagreed, so every answer is PyTorch's
    np.testing.assert_array_equal(got, want)

    foreign = tmp_path / "foreign"  # another run's network (another input size) under this run's name
    passes.graph_for(Predictor(small, device="cpu"), foreign).rename(foreign / f"network-{passes._weights_digest(lite)}.onnx")
    got, _ = passes.proba(p, pool, foreign)
    np.testing.assert_array_equal(got, want)


def test_the_eager_pass_when_asked_or_when_the_graph_is_unreadable(runs, pool, tmp_path, monkeypatch):
    lite = Predictor(runs[0], device="cpu")
    want = lite.proba_tensor(pool, batch_size=256)
    monkeypatch.setenv(passes.ENV, "torch")
    got, engine = passes.proba(lite, pool, tmp_path / "a")
    assert engine == "torch" and not (tmp_path / "a").exists()
    np.testing.assert_array_equal(got, want)
    monkeypatch.delenv(passes.ENV)
    folder = tmp_path / "b"
    folder.mkdir()
    (folder / f"network-{passes._weights_digest(runs[0])}.onnx").write_bytes(b"not a graph")
    got, engine = passes.proba(lite, pool, folder)
    assert engine == "torch"
    np.testing.assert_array_equal(got, want)


def test_the_probe_measures_the_pass_it_predicts(runs, pool, tmp_path, monkeypatch):
    p = Predictor(runs[1], device="cpu")
    first = passes.measure(p, pool, tmp_path / "t")
    assert first["engine"] == "onnxruntime" and first["pass_ips"] > 0 and first["eager_ips"] > 0 and first["export_s"] > 0
    assert passes.measure(p, pool, tmp_path / "t")["export_s"] < first["export_s"]  # the graph is there now: no export again
    monkeypatch.setenv(passes.ENV, "torch")
    eager = passes.measure(p, pool, tmp_path / "t")
    assert eager["engine"] == "torch" and eager["export_s"] == 0.0 and eager["pass_ips"] == eager["eager_ips"]


def _naive_features(p, images):
    """PyTorch's pooled features and probabilities, image by image."""
    p.model.eval()
    with torch.inference_mode():
        feats = torch.cat([p.model.forward_features(p.prepare(images[i : i + 1])).float() for i in range(len(images))])
        probs = p.model.forward_head(feats).softmax(1)
    return probs.numpy(), feats.numpy()


@pytest.mark.parametrize("which", [0, 1])
def test_one_pass_gives_the_probabilities_and_the_features_pytorch_computes(runs, pool, which, tmp_path, monkeypatch):
    p = Predictor(runs[which], device="cpu")
    want_p, want_f = _naive_features(p, pool)
    probs, feats, engine = passes.proba_features(p, pool, tmp_path / "tables")
    assert engine == "onnxruntime" and feats.shape == want_f.shape and feats.shape[0] == len(pool) and feats.shape[1] > 3
    np.testing.assert_allclose(probs, want_p, atol=passes.MAX_DIFF, rtol=0)
    np.testing.assert_allclose(feats, want_f, atol=passes.FEATURE_DIFF * np.abs(want_f).max(), rtol=0)
    assert np.abs(feats[passes.CHECK_IMAGES :] - want_f[passes.CHECK_IMAGES :]).max() > 0  # the graph's features past the check
    monkeypatch.setenv(passes.ENV, "torch")
    probs, feats, engine = passes.proba_features(p, pool, tmp_path / "eager")
    assert engine == "torch"
    np.testing.assert_allclose(feats, want_f, atol=1e-4 * np.abs(want_f).max(), rtol=0)
    np.testing.assert_allclose(probs, want_p, atol=1e-5, rtol=0)


def test_features_from_a_graph_of_other_weights_give_way_to_pytorch(runs, pool, tmp_path):
    lite = runs[0]
    p = Predictor(lite, device="cpu")
    want_p, want_f = _naive_features(p, pool)
    other = Predictor(lite, device="cpu")
    with torch.no_grad():
        for w in other.model.parameters():
            w.mul_(1.05)
    passes.graph_for(other, tmp_path / "t")
    probs, feats, engine = passes.proba_features(p, pool, tmp_path / "t")
    np.testing.assert_allclose(feats, want_f, atol=1e-4 * np.abs(want_f).max(), rtol=0)  # PyTorch's, not the other graph's
    np.testing.assert_allclose(probs, want_p, atol=1e-5, rtol=0)

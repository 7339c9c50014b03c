"""``headstart export``: every exportable run kind written as ONNX and torch.export, its parity
with PyTorch checked and stored, and — the point of it — the exported file, fed images by the
resize rule its ``.json`` states, giving the probabilities ``headstart predict`` gives."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from headstart import TrainConfig, api, train
from headstart.api_export import parity
from headstart.cli import app
from headstart.data.decode import load_image, to_square_uint8
from headstart.errors import ConfigError, DataError, RunError
from headstart.export.formats import runner
from headstart.predictor import Predictor


def _train(data, out, **kw):
    train(TrainConfig(data=str(data), output=str(out), backbone="resnet_small", epochs=1, progress=False, device="cpu", **kw))
    return out


@pytest.fixture(scope="module")
def runs(shapes_folder, tmp_path_factory):
    root = tmp_path_factory.mktemp("exp")
    lin = _train(shapes_folder, root / "lin", strategy="full", image_size=48)
    knn = _train(shapes_folder, root / "knn", strategy="knn", image_size=48)
    return {"lin": lin, "knn": knn, "root": root}


def _files(folder):
    return sorted(p for p in folder.rglob("*") if p.suffix in (".jpg", ".png", ".webp") and p.name != "broken.jpg")


def _pixels(files, size):
    return np.stack([to_square_uint8(load_image(p), size) for p in files]).transpose(0, 3, 1, 2).copy()


@pytest.mark.parametrize("fmt", ["onnx", "pt2"])
@pytest.mark.parametrize("which", ["lin", "knn"])
def test_an_exported_classifier_predicts_what_headstart_predicts(runs, shapes_folder, fmt, which, tmp_path):
    out = tmp_path / f"model.{fmt}"
    info = api.export(runs[which], format=fmt, output=out)
    assert out.is_file() and not (tmp_path / f"model.{fmt}.partial").exists()
    stored = json.loads((tmp_path / f"model.{fmt}.json").read_text())
    assert stored["parity"]["passed"] and stored["parity"]["max_abs_diff_scores"] < 1e-3 and stored["parity"]["top1_agreement"] == 1.0
    assert "training images" in stored["parity"]["source"] and stored["classes"] == ["disc", "square", "stripes"]
    assert info["input"]["size"] == 48 and info["outputs"] == ["logits", "probabilities"]
    files = _files(shapes_folder)
    x = _pixels(files, info["input"]["size"])
    probs = runner(out, fmt)(x)[1]
    assert probs.shape == (len(files), 3)
    _, want, bad = Predictor(runs[which], device="cpu").proba_files(files)
    assert not bad
    np.testing.assert_allclose(probs, want, atol=1e-4)
    one = runner(out, fmt)(x[:1])[1]  # the batch is dynamic
    np.testing.assert_allclose(one, want[:1], atol=1e-4)


def test_an_ensemble_and_a_segmenter_export(runs, shapes_folder, tmp_path):
    ens = runs["root"] / "ens"
    api.ensemble([str(runs["lin"]), str(runs["knn"])], output=ens, rule="soft", device="cpu", calibrate=False)
    info = api.export(ens, format="onnx", output=tmp_path / "ens.onnx")
    assert info["outputs"] == ["log_probabilities", "probabilities"] and info["parity"]["passed"]
    files = _files(shapes_folder)
    probs = runner(tmp_path / "ens.onnx", "onnx")(_pixels(files, info["input"]["size"]))[1]
    _, want, _ = Predictor(ens, device="cpu").proba_files(files)
    np.testing.assert_allclose(probs, want, atol=1e-4)

    seg_data = tmp_path / "seg"
    (seg_data / "images").mkdir(parents=True)
    (seg_data / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        img = rng.integers(0, 255, (30, 40, 3)).astype(np.uint8)
        m = np.zeros((30, 40), np.uint8)
        m[5:15, 5:20] = 1
        Image.fromarray(img).save(seg_data / "images" / f"{i}.png")
        Image.fromarray(m, mode="L").save(seg_data / "masks" / f"{i}.png")
    api.segment_train(str(seg_data), output=tmp_path / "segrun", backbone="resnet_small", image_size=32, epochs=1, progress=False, device="cpu")
    info = api.export(tmp_path / "segrun", format="onnx", output=tmp_path / "seg.onnx")
    assert info["kind"] == "segmenter" and info["parity"]["passed"] and "each side on its own" in info["input"]["resize"]
    logits = runner(tmp_path / "seg.onnx", "onnx")(np.zeros((2, 3, 32, 32), np.uint8))[0]
    assert logits.shape == (2, 2, 32, 32)


def test_a_wrong_graph_fails_the_check_and_leaves_nothing(runs, tmp_path, monkeypatch):
    import headstart.api_export as ae

    real = ae.runner

    def off_by_one(path, fmt):
        run = real(path, fmt)
        return lambda x: [o + 1.0 for o in run(x)]

    monkeypatch.setattr(ae, "runner", off_by_one)
    with pytest.raises(RunError, match="does not give PyTorch's answers"):
        api.export(runs["lin"], output=tmp_path / "bad.onnx")
    assert not list(tmp_path.iterdir())


def test_parity_by_hand():
    ref = [np.array([[1.0, 0.0], [0.5, 0.5 + 1e-4]]), np.array([[0.7, 0.3], [0.5, 0.5]])]
    same = parity(ref, [r.copy() for r in ref], ["logits", "probabilities"])
    assert same["passed"] and same["top1_agreement"] == 1.0 and same["max_abs_diff_scores"] == 0.0
    tie = [np.array([[1.0, 0.0], [0.5 + 2e-4, 0.5]]), ref[1]]  # the near tie flips: not held against the export
    r = parity(ref, tie, ["logits", "probabilities"])
    assert r["passed"] and r["top1_agreement"] == 0.5 and r["disagreements_beyond_ties"] == 0
    far = [np.array([[0.0, 1.0], [0.5, 0.5 + 1e-4]]), ref[1]]
    r = parity(ref, far, ["logits", "probabilities"])
    assert not r["passed"] and r["disagreements_beyond_ties"] == 1 and r["max_abs_diff"]["logits"] == 1.0


def test_bad_requests_name_the_fix(runs, tmp_path):
    with pytest.raises(ConfigError, match="--format"):
        api.export(runs["lin"], format="tflite")
    with pytest.raises(DataError, match="no images found"):
        api.export(runs["lin"], check=str(tmp_path))
    with pytest.raises(ConfigError, match="kind 'body'"):
        from headstart.export.graph import exportable
        from headstart.runfolder import LoadedRun

        exportable(LoadedRun(path=tmp_path, model=torch.nn.Identity(), meta={"kind": "body", "image_size": 8, "classes": ["a"]}))


def test_the_cli_exports(runs, tmp_path):
    res = CliRunner().invoke(app, ["export", str(runs["lin"]), "-o", str(tmp_path / "m.onnx"), "--parity-images", "8"], catch_exceptions=False)
    assert res.exit_code == 0 and "top-1 agreement 1.0000" in res.output
    assert json.loads((tmp_path / "m.onnx.json").read_text())["parity"]["images"] == 8
    assert torch.from_numpy(runner(tmp_path / "m.onnx", "onnx")(np.zeros((3, 3, 48, 48), np.uint8))[1]).sum(1).allclose(torch.ones(3))


@pytest.mark.parametrize("detector", ["fcos", "fasterrcnn"])
def test_a_detector_exports_one_image_per_call_with_the_same_boxes(tmp_path, detector):
    import csv

    from headstart.api_detect import load_detector, predict_boxes

    rng = np.random.default_rng(0)
    rows = [["path", "x0", "y0", "x1", "y1", "label"]]
    for i in range(8):
        img = rng.integers(90, 150, (60, 80, 3)).astype(np.uint8)
        img[10:30, 20:40] = 250
        Image.fromarray(img).save(tmp_path / f"{i}.png")
        rows.append([f"{i}.png", 20, 10, 40, 30, "light"])
    with (tmp_path / "boxes.csv").open("w", newline="") as f:
        csv.writer(f).writerows(rows)
    run = tmp_path / "det"
    api.detect_train(str(tmp_path), output=run, backbone="resnet_small", detector=detector, image_size=64, epochs=2, progress=False, device="cpu")
    info = api.export(run, output=tmp_path / "det.onnx")
    assert info["outputs"] == ["boxes", "scores", "labels"] and info["input"]["dynamic"] == [] and info["parity"]["passed"]
    assert info["parity"]["same_detections"] == 1.0 and "each side on its own" in info["input"]["resize"]
    # an image already at the run's size: no resize on either path, so the pixels are the same
    img = Image.fromarray(np.asarray(load_image(tmp_path / "3.png"))[:, 8:72][:64].copy()).resize((64, 64))
    px = np.asarray(img, dtype=np.uint8).transpose(2, 0, 1)[None].copy()
    b, sc, lab = runner(tmp_path / "det.onnx", "onnx")(px)
    loaded = load_detector(run)
    want = predict_boxes(loaded.model, [img], image_size=64, preprocess=loaded.preprocess)[0]
    np.testing.assert_allclose(np.sort(sc), np.sort(want["scores"]), atol=1e-4)
    gap = np.abs(b[:, None, :] - want["boxes"][None, :, :]).max(2)  # each exported box against every headstart box
    assert len(b) == len(want["boxes"]) and gap.min(1).max() < 0.05 and gap.min(0).max() < 0.05
    with pytest.raises(ConfigError, match="--format onnx, FP32"):
        api.export(run, format="pt2")


def test_a_fixed_graph_computes_tiny_sigmoids_exactly(tmp_path):
    """A detector ranks proposals by sigmoid(objectness); onnxruntime's own Sigmoid gives 0 below
    ~1e-7, which ties them and changes the boxes. The exported graph must keep them apart."""
    from headstart.export.formats import export_onnx

    class Scores(torch.nn.Module):
        def forward(self, x):
            return (torch.sigmoid(x.float() - 40.0),)

    x = torch.arange(0, 40, 4, dtype=torch.uint8).reshape(1, 1, 1, 10)
    before = torch.sigmoid
    export_onnx(Scores().eval(), x, tmp_path / "s.onnx", ["scores"], fixed=True)
    assert torch.sigmoid is before  # put back after the export
    got = runner(tmp_path / "s.onnx", "onnx")(x.numpy())[0].ravel()
    want = 1.0 / (1.0 + np.exp(40.0 - x.numpy().astype(np.float64).ravel()))
    np.testing.assert_allclose(got, want, rtol=1e-5)

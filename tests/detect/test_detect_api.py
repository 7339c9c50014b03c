"""``headstart detect train | eval | predict`` end to end on a small boxed set: the detector run
folder, boxes given back in the images' own pixels (EXIF orientation applied) that score what
eval says, CAM boxes of a classifier beside them, exact resume after an interruption, the time
budget's plan, clear refusals."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from typer.testing import CliRunner

from headstart import api, api_explain
from headstart.api_detect import DETECTOR, default_image_size
from headstart.cli import app
from headstart.detect.boxes import load_boxes
from headstart.detect.method import DetectionMethod
from headstart.detect.metrics import score_detections
from headstart.detect.model import Detector
from headstart.errors import ConfigError, DataError, HeadstartError
from headstart.runfolder import load_run

SMALL = dict(backbone="resnet_small", image_size=64, batch_size=8, progress=False, device="cpu")


def boxed(root, n=24, w=80, h=60, seed=0):
    """Non-square images, a bright square ("light") or a dark one ("dark") each, in class folders
    (a classification set of the same images) with boxes.csv."""
    rng = np.random.default_rng(seed)
    rows = [["path", "x0", "y0", "x1", "y1", "label"]]
    for i in range(n):
        img = rng.integers(90, 150, (h, w, 3)).astype(np.uint8)
        s = int(rng.integers(16, 26))
        x, y = int(rng.integers(0, w - s)), int(rng.integers(0, h - s))
        name = "light" if i % 2 == 0 else "dark"
        img[y : y + s, x : x + s] = 250 if name == "light" else 10
        (root / name).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(root / name / f"b{i:02d}.png")
        rows.append([f"{name}/b{i:02d}.png", x, y, x + s, y + s, name])
    with (root / "boxes.csv").open("w", newline="") as f:
        csv.writer(f).writerows(rows)
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return boxed(tmp_path_factory.mktemp("det") / "train")


@pytest.fixture(scope="module")
def run(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("detrun") / "det"
    api.detect_train(str(data), output=out, epochs=24, lr=3e-3, **SMALL)
    return out


def test_the_run_folder_is_a_detector(run, data):
    meta = json.loads((run / "model.json").read_text())
    assert meta["kind"] == DETECTOR and meta["classes"] == ["dark", "light"] and meta["detector"] == "fasterrcnn"
    loaded = load_run(run)
    assert isinstance(loaded.model, Detector) and loaded.kind == DETECTOR
    metrics = json.loads((run / "metrics.json").read_text())
    assert len(metrics["history"]) == 24 and "val_f1" in metrics["history"][0] and metrics["boxes"] == 20
    splits = json.loads((run / "splits.json").read_text())
    assert len(splits["val"]) == 4 and not set(splits["val"]) & set(splits["train"])
    assert metrics["val"]["images"] == 4
    assert not (run / "checkpoint").exists()


def test_it_learned_and_predict_gives_boxes_in_the_images_pixels_that_score_what_eval_says(run, data, tmp_path):
    r = api.detect_eval(run, str(data))
    assert r["corloc"] >= 0.75 and r["map_50"] > 0.5, (r["corloc"], r["map_50"])
    assert json.loads((run / "eval.json").read_text())["map"] == pytest.approx(r["map"])
    rows = api.detect_predict(run, [str(data)], output=tmp_path / "p", min_score=0.0)
    assert len(rows) == 24 and all((tmp_path / "p" / f"{row['path'].split('/')[-1][:-4]}-boxes.png").is_file() for row in rows)
    truth = load_boxes(data, size=8)
    by_path = {r["path"]: r for r in rows}
    preds = []
    for p in truth.paths:
        boxes = by_path[str(p)]["boxes"]
        preds.append({"boxes": np.array([b["box"] for b in boxes]).reshape(-1, 4), "scores": np.array([b["score"] for b in boxes]),
                      "labels": np.array([truth.classes.index(b["label"]) for b in boxes], dtype=np.int64)})
    again = score_detections(preds, [truth.targets(i) for i in range(len(truth))], truth.classes)
    assert again["map"] == pytest.approx(r["map"], abs=0.01)  # predict's boxes (rounded to 0.1 px) are eval's
    assert again["corloc"] == pytest.approx(r["corloc"])
    with (tmp_path / "p" / "boxes.csv").open() as f:
        listed = list(csv.DictReader(f))
    assert len(listed) == sum(len(r["boxes"]) for r in rows) and set(listed[0]) == {"path", "x0", "y0", "x1", "y1", "label", "score"}
    assert all(0 <= float(b["x1"]) <= 80.5 and 0 <= float(b["y1"]) <= 60.5 for b in listed)  # the image's own 80 × 60 pixels


def test_predict_applies_exif_orientation_and_skips_bad_files(run, data, tmp_path):
    img = Image.open(data / "light" / "b00.png").convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6
    src = tmp_path / "in"
    src.mkdir()
    img.save(src / "turned.jpg", exif=exif.tobytes())
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    rows = api.detect_predict(run, [str(src)], output=tmp_path / "o", min_score=0.0)
    good = next(r for r in rows if "drawn" in r)
    assert good["size"] == [60, 80]  # upright: width and height swap
    assert Image.open(good["drawn"]).size == (60, 80)
    assert all(b["box"][2] <= 60.5 and b["box"][3] <= 80.5 for b in good["boxes"])
    assert any("error" in r and r["path"].endswith("broken.png") for r in rows)


@pytest.fixture(scope="module")
def clf(data):
    from headstart import TrainConfig, train

    out = data.parent / "clf"
    train(TrainConfig(data=str(data), output=str(out), backbone="resnet_small", strategy="linear", epochs=1, progress=False, device="cpu"))
    return out


def test_cam_boxes_of_a_classifier_stand_beside_the_detector(run, data, clf):
    r = api.detect_eval(run, str(data), classifier=clf, device="cpu")
    cam = r["cam"]
    assert cam["images"] == 24 and 0 <= cam["corloc"] <= 1 and 0 <= cam["mean_iou"] <= 1 and 0 <= cam["classifier_accuracy"] <= 1
    ex = api_explain.explain(str(clf), [str(data)], ground_truth=data / "boxes.csv", output=data.parent / "ex", device="cpu")
    assert cam["corloc"] == pytest.approx(ex["ground_truth"]["corloc"])


def test_the_report_scores_what_eval_does_and_puts_cam_boxes_beside(run, data, clf, tmp_path):
    out = api_explain.report(run, str(data), output=tmp_path / "r.html", classifier=clf, device="cpu")
    ev = api.detect_eval(run, str(data))
    assert out["kind"] == DETECTOR and out["sections"] == ["summary", "scores", "training", "examples", "cam"]
    assert out["map"] == pytest.approx(ev["map"]) and out["corloc"] == pytest.approx(ev["corloc"])
    assert out["cam"]["corloc"] == pytest.approx(api.detect_eval(run, str(data), classifier=clf, device="cpu")["cam"]["corloc"])
    page = (tmp_path / "r.html").read_text()
    assert page.count("data:image/png;base64,") == 3  # curves, best, worst
    val = api_explain.report(run, output=tmp_path / "v.html", device="cpu")  # no data: the run's own validation images
    assert val["images"] == 4


def test_an_interrupted_training_resumes_to_the_same_weights(data, tmp_path, monkeypatch):
    kw = {**SMALL, "epochs": 2}
    whole = tmp_path / "whole"
    api.detect_train(str(data), output=whole, **kw)
    real = DetectionMethod.step
    calls = {"n": 0}

    def interrupted(self, batch):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(self, batch)

    part = tmp_path / "part"
    monkeypatch.setattr(DetectionMethod, "step", interrupted)
    m = api.detect_train(str(data), output=part, checkpoint_every=1, **kw)
    assert m["interrupted"] and (part / "checkpoint" / "last.pt").is_file()
    monkeypatch.setattr(DetectionMethod, "step", real)
    with pytest.raises(ConfigError, match=r"started with detector 'fasterrcnn' \(now 'fcos'\)"):
        api.detect_train(str(data), output=part, resume=True, **{**kw, "detector": "fcos"})
    api.detect_train(str(data), output=part, resume=True, **kw)
    a, b = load_file(str(whole / "model.safetensors")), load_file(str(part / "model.safetensors"))
    assert set(a) == set(b)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)


def test_the_time_budget_plans_from_a_measured_step_and_fcos_trains(data, tmp_path):
    m = api.detect_train(str(data), output=tmp_path / "b", time_budget=0.1, detector="fcos", **SMALL)
    assert "ms per step measured" in m["reasons"]["epochs"]
    assert m["seconds"]["total"] < 0.1 * 60 + 30
    assert load_run(tmp_path / "b").model.detector == "fcos"


def test_bad_requests_name_the_fix(data, run, tmp_path):
    with pytest.raises(ConfigError, match="--detector"):
        api.detect_train(str(data), output=tmp_path / "a", detector="yolo", **SMALL)
    with pytest.raises(DataError, match="boxes.csv"):
        api.detect_train(str(tmp_path), output=tmp_path / "b", **SMALL)
    with pytest.raises(HeadstartError, match="finished run"):
        api.detect_train(str(data), output=run, **SMALL)
    other = boxed(tmp_path / "other", n=4)
    (other / "boxes.csv").write_text((other / "boxes.csv").read_text().replace(",dark", ",grey"))
    with pytest.raises(DataError, match="'grey' is not among the run's classes"):
        api.detect_eval(run, str(other))
    seg = tmp_path / "seg"
    seg.mkdir()
    (seg / "model.json").write_text(json.dumps({"kind": "classifier"}))
    with pytest.raises(HeadstartError):
        api.detect_predict(seg, [str(data)], output=tmp_path / "x")
    with pytest.raises(ConfigError, match="--min-score"):
        api.detect_predict(run, [str(data)], output=tmp_path / "x", min_score=1.5)


def test_default_sizes():
    assert default_image_size([(80, 60)] * 3) == 96
    assert default_image_size([(30, 22)]) == 64
    assert default_image_size([(1000, 700)]) == 320


def test_the_cli_evaluates_and_predicts(run, data, tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["detect", "eval", str(run), str(data), "--json"], catch_exceptions=False)
    assert res.exit_code == 0
    assert json.loads(res.stdout)["map"] == pytest.approx(api.detect_eval(run, str(data))["map"])
    res = runner.invoke(app, ["detect", "eval", str(run), str(data)], catch_exceptions=False)
    assert res.exit_code == 0 and "mAP@0.5" in res.output and "light" in res.output
    res = runner.invoke(app, ["detect", "predict", str(run), str(data / "light" / "b00.png"), "-o", str(tmp_path / "p")], catch_exceptions=False)
    assert res.exit_code == 0 and (tmp_path / "p" / "b00-boxes.png").is_file() and (tmp_path / "p" / "boxes.csv").is_file()


@pytest.mark.parametrize("engine", ["onnxruntime", "openvino"])
def test_predict_in_an_exported_engine_gives_torchs_boxes(run, data, tmp_path, engine):
    # images already at the run's size: neither path resizes, so both see the same pixels
    square = tmp_path / "square"
    square.mkdir()
    for f in sorted(data.glob("*/*.png")):
        Image.open(f).convert("RGB").resize((64, 64), Image.BILINEAR).save(square / f"{f.parent.name}-{f.name}")
    want = api.detect_predict(run, [str(square)], output=tmp_path / "t", min_score=0.3)
    got = api.detect_predict(run, [str(square)], output=tmp_path / "e", min_score=0.3, engine=engine)
    assert [r["path"] for r in got] == [r["path"] for r in want]
    assert (tmp_path / "e" / "boxes.csv").is_file()
    matched = 0
    for a, b in zip(want, got):
        assert len(a["boxes"]) == len(b["boxes"]), (a, b)
        for box_a, box_b in zip(a["boxes"], b["boxes"]):
            gap = max(abs(p - q) for p, q in zip(box_a["box"], box_b["box"]))  # boxes are given to 0.1 px
            assert gap <= 0.2 and box_a["label"] == box_b["label"] and box_a["score"] == pytest.approx(box_b["score"], abs=2e-3), (a, b)
            matched += 1
    assert matched >= 12
    # images of another size: the engine resizes uint8 pixels (Pillow), headstart normalised floats (torch)
    other = api.detect_predict(run, [str(data)], output=tmp_path / "o", min_score=0.3, engine=engine)
    assert len(other) == 24 and sum(bool(r["boxes"]) for r in other) >= 12
    with pytest.raises(ConfigError, match="--engine"):
        api.detect_predict(run, [str(data)], output=tmp_path / "x", engine="tensorrt")

"""Fast predict: onnxruntime and OpenVINO give headstart's own answers on the same files, the graph
is exported when missing or stale, unreadable files are skipped and named, and INT8 is measured
(its stored agreement is what running both files gives) and never used unless asked for."""

from __future__ import annotations

import json

import numpy as np
import pytest

from headstart import TrainConfig, api, train
from headstart.data.decode import load_image, to_square_uint8
from headstart.errors import ConfigError
from headstart.export.engines import decoded_batches
from headstart.export.formats import onnx_runner


@pytest.fixture(scope="module")
def run(shapes_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("eng") / "run"
    train(TrainConfig(data=str(shapes_folder), output=str(out), backbone="resnet_small", strategy="full", epochs=2, image_size=48,
                      progress=False, device="cpu"))
    return out


def _probs(out):
    return {r["path"]: {t["class"]: t["probability"] for t in r["top"]} for r in out["predictions"]}


@pytest.mark.parametrize("engine,tol", [("onnxruntime", 1e-4), ("openvino", 1e-3)])
def test_engines_give_headstarts_answers(run, shapes_folder, engine, tol):
    want = api.predict(run, [str(shapes_folder)], top_k=3, device="cpu")
    got = api.predict(run, [str(shapes_folder)], top_k=3, engine=engine, batch_size=7)
    assert got["engine"]["name"] == engine and not got["engine"]["int8"]
    a, b = _probs(want), _probs(got)
    assert set(a) == set(b) and len(a) == 30
    for path in a:
        for cls, p in a[path].items():
            assert b[path][cls] == pytest.approx(p, abs=tol)
    assert [s["path"] for s in got["skipped"]] == [s["path"] for s in want["skipped"]]  # the broken JPEG, named
    assert got["skipped"][0]["path"].endswith("broken.jpg")


def test_a_stale_export_is_redone(run, shapes_folder):
    api.predict(run, [str(shapes_folder / "disc")], engine="onnxruntime")
    info_path = run / "model.onnx.json"
    info = json.loads(info_path.read_text())
    info["run_weights_sha256"] = "0" * 64  # as if the run had been retrained since
    info_path.write_text(json.dumps(info))
    api.predict(run, [str(shapes_folder / "disc")], engine="onnxruntime")
    assert json.loads(info_path.read_text())["run_weights_sha256"] != "0" * 64


def test_int8_is_measured_and_its_stored_agreement_is_true(run, shapes_folder):
    info = api.export(run, int8=True)
    q = info["int8"]
    assert (run / q["file"]).is_file() and q["calibration_images"] > 0 and q["held_out_images"] > 0
    for b in q["speed"].values():
        assert b["fp32_img_s"] > 0 and b["int8_img_s"] > 0
    assert q["machine"]["cpu"] and q["machine"]["vnni"] in (True, False, None)
    from headstart.api_export import INT8_IMAGES, parity_pixels
    from headstart.runfolder import load_run

    x, _ = parity_pixels(load_run(run), None, 2 * INT8_IMAGES)
    held = x.numpy()[1::2]  # the images it was not calibrated on
    assert q["held_out_images"] == len(held) and q["calibration_images"] == len(x) - len(held)
    f, i8 = onnx_runner(run / "model.onnx")(held), onnx_runner(run / q["file"])(held)
    assert q["top1_agreement_with_fp32"] == pytest.approx(float((f[0].argmax(1) == i8[0].argmax(1)).mean()))
    assert q["top1_agreement_with_fp32"] >= 0.8
    # the boundary layers stayed FP32: no quantize/dequantize pair feeds them
    import onnx

    g = onnx.load(str(run / q["file"])).graph
    made_by = {o: n.op_type for n in g.node for o in n.output}
    by_name = {n.name: n for n in g.node}
    assert q["kept_fp32"] and all(made_by.get(t) != "DequantizeLinear" for k in q["kept_fp32"] for t in by_name[k].input)
    assert any(n.op_type == "Conv" and made_by.get(n.input[1]) == "DequantizeLinear" for n in g.node)  # and the rest is INT8
    # on labelled files: the accuracy lost is at most the share of answers that changed
    files = sorted(p for p in shapes_folder.rglob("*") if p.suffix in (".jpg", ".png", ".webp") and p.name != "broken.jpg")
    labels = np.array([["disc", "square", "stripes"].index(p.parent.name) for p in files])
    px = np.stack([to_square_uint8(load_image(p), 48) for p in files]).transpose(0, 3, 1, 2).copy()
    a32, a8 = onnx_runner(run / "model.onnx")(px)[0].argmax(1), onnx_runner(run / q["file"])(px)[0].argmax(1)
    assert abs((a32 == labels).mean() - (a8 == labels).mean()) <= (a32 != a8).mean() + 1e-12
    got = api.predict(run, [str(shapes_folder / "square")], engine="onnxruntime", int8=True)
    assert got["engine"]["int8"] and got["engine"]["file"].endswith(".int8.onnx") and len(got["predictions"]) == 10


def test_int8_tries_the_7_bit_scheme_when_agreement_is_low_and_keeps_the_better(run, monkeypatch):
    import headstart.export.quantize as quantize

    monkeypatch.setattr(quantize, "MIN_AGREEMENT", 1.01)  # no scheme is good enough: both are tried
    q = api.export(run, int8=True)["int8"]
    assert [t["scheme"] for t in q["schemes_tried"]] == list(quantize.SCHEMES)
    best = max(q["schemes_tried"], key=lambda t: t["top1_agreement_with_fp32"])
    assert q["top1_agreement_with_fp32"] == best["top1_agreement_with_fp32"]
    assert not list(run.glob("*.partial"))  # the loser is gone
    monkeypatch.setattr(quantize, "MIN_AGREEMENT", 0.0)  # the first is good enough: it alone is tried
    q = api.export(run, int8=True)["int8"]
    assert [t["scheme"] for t in q["schemes_tried"]] == list(quantize.SCHEMES)[:1]


def test_decoding_runs_ahead_in_batches(shapes_folder):
    files = sorted(p for p in shapes_folder.rglob("*") if p.is_file())
    seen = list(decoded_batches(files, 16, batch_size=4, square=to_square_uint8))
    assert sum(len(ok) for ok, _, _ in seen) == 30 and sum(len(bad) for _, _, bad in seen) == 1
    assert all(x.shape[1:] == (3, 16, 16) and x.dtype == np.uint8 for _, x, _ in seen)
    assert [p for ok, _, _ in seen for p in ok] == [p for p in files if p.name != "broken.jpg"]  # order kept


def test_engine_requests_that_cannot_work_are_refused(run, shapes_folder):
    with pytest.raises(ConfigError, match="--engine"):
        api.predict(run, [str(shapes_folder)], engine="tensorrt")
    with pytest.raises(ConfigError, match="--tta"):
        api.predict(run, [str(shapes_folder)], engine="onnxruntime", tta=True)
    with pytest.raises(ConfigError, match="--int8"):
        api.predict(run, [str(shapes_folder)], int8=True)

"""explain / bias / features / report through the API and the CLI on a small trained run with
known object boxes; the report is rendered in headless Chromium."""

from __future__ import annotations

import csv
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from headstart import TrainConfig, train
from headstart.api_explain import bias, explain, features, report
from headstart.cli import app
from headstart.errors import HeadstartError
from headstart.report.browser import find_browser, render_check

FAST = dict(image_size=48, progress=False, device="cpu")


def _placed(kind: str, w: int, h: int, rng: np.random.Generator) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A disc or square of random size at a random place on noise; returns the image and its box."""
    img = (rng.random((h, w, 3)) * 70).astype(np.uint8)
    s = int(rng.integers(min(w, h) // 4, min(w, h) // 2))
    x0, y0 = int(rng.integers(0, w - s)), int(rng.integers(0, h - s))
    yy, xx = np.mgrid[0:h, 0:w]
    if kind == "disc":
        r = s / 2
        mask = (yy - (y0 + r - 0.5)) ** 2 + (xx - (x0 + r - 0.5)) ** 2 < r**2
        img[mask] = [235, 50, 50]
    else:
        mask = (yy >= y0) & (yy < y0 + s) & (xx >= x0) & (xx < x0 + s)
        img[mask] = [50, 220, 60]
    ys, xs = np.nonzero(mask)
    return img, (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)


@pytest.fixture(scope="module")
def boxed(tmp_path_factory) -> tuple[Path, Path]:
    """2 classes × 12 images of mixed sizes and aspect ratios, with a boxes CSV."""
    root = tmp_path_factory.mktemp("boxed")
    rng = np.random.default_rng(0)
    rows = []
    for cls in ("disc", "square"):
        (root / cls).mkdir()
        for i in range(12):
            w, h = int(rng.integers(56, 96)), int(rng.integers(56, 96))
            img, box = _placed(cls, w, h, rng)
            name = f"{cls}/{i}.{'jpg' if i % 2 else 'png'}"
            Image.fromarray(img).save(root / name, quality=95)
            rows.append([name, *box])
    gt = root / "boxes.csv"
    with gt.open("w", newline="") as f:
        csv.writer(f).writerows([["path", "x0", "y0", "x1", "y1"], *rows])
    return root, gt


@pytest.fixture(scope="module")
def boxed_run(boxed, tmp_path_factory) -> Path:
    root, _ = boxed
    out = tmp_path_factory.mktemp("boxed-run") / "run"
    train(TrainConfig(data=str(root), output=str(out), strategy="partial", epochs=3, val=None, **FAST))
    return out


def test_explain_writes_overlays_boxes_and_iou(boxed, boxed_run, tmp_path):
    root, gt = boxed
    files = sorted((root / "disc").glob("*"))[:3] + sorted((root / "square").glob("*"))[:2]
    out = explain(boxed_run, [str(f) for f in files], boxes=True, ground_truth=gt, output=tmp_path / "x", device="cpu")
    assert out["layer"] == "conv_head" and len(out["images"]) == 5
    assert (tmp_path / "x" / "explain.json").is_file()
    for r in out["images"]:
        im = Image.open(r["overlay"])
        assert im.width > 2 * 48 and im.height >= 48  # image | overlay, enlarged to ≥ 112 px
        assert 0 <= r["iou"] <= 1 and r["explained_class"] == r["predicted"]
        mask = np.asarray(Image.open(r["mask"]))
        assert mask.shape[::-1] == Image.open(r["path"]).size and set(np.unique(mask)) <= {0, 255}
        if r["box"] is not None:  # boxes are given in pixels of the original image
            w, h = Image.open(r["path"]).size
            assert 0 <= r["box"][0] < r["box"][2] <= w + 1 and 0 <= r["box"][1] < r["box"][3] <= h + 1
    g = out["ground_truth"]
    assert g["images_with_boxes"] == 5 and g["mean_iou"] == pytest.approx(np.mean([r["iou"] for r in out["images"]]))
    forced = explain(boxed_run, [str(files[0])], target="square", output=tmp_path / "y", device="cpu")
    assert forced["images"][0]["explained_class"] == "square"
    with pytest.raises(HeadstartError, match="not one of this run's classes: disc, square"):
        explain(boxed_run, [str(files[0])], target="triangle", device="cpu")
    with pytest.raises(HeadstartError, match="--threshold is a fraction"):
        explain(boxed_run, [str(files[0])], threshold=1.5, device="cpu")


def test_bias_and_features_write_their_files(boxed, boxed_run, tmp_path):
    root, gt = boxed
    out = bias(boxed_run, str(root), ground_truth=gt, device="cpu")
    assert (boxed_run / "bias-audit.json").is_file() and out["images"] == 24
    assert {r["class"] for r in out["per_class"]} == {"disc", "square"}
    for r in out["per_class"]:
        assert r["with_ground_truth"] == 12 and 0 <= r["inside"] <= 1 and 0 <= r["border"] <= 1
    loc = out["localization"]
    assert loc["images_with_ground_truth"] == 24 and len(loc["by_threshold"]) >= 3
    assert 0 < loc["centred_box_baseline_iou"] < 1
    f = features(boxed_run, str(root), output=tmp_path / "f", device="cpu", top_k=4)
    assert {"filters", "pca", "tsne"} <= set(f["files"]) and len(f["patches"]) == 1
    for path in f["files"].values():
        assert Image.open(path).size[0] > 50


def test_report_renders_in_chromium_with_every_section_and_image(boxed, boxed_run, tmp_path):
    root, gt = boxed
    out = report(boxed_run, str(root), output=tmp_path / "r.html", ground_truth=gt, device="cpu")
    page = (tmp_path / "r.html").read_text()
    assert out["sections"] == ["summary", "training", "advice", "errors", "gradcam", "bias", "localization", "features", "config"]
    assert "http://" not in page and "https://" not in page and "<script" not in page  # self-contained
    n_img = len(re.findall(r"<img ", page))
    assert n_img >= 9 and n_img == page.count('src="data:image/png;base64,')
    tb = Path(out["tensorboard"])
    assert list(tb.rglob("events.out.tfevents.*")) and list(tb.rglob("projector_config.pbtxt"))
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tb)).Reload()
    assert acc.Tags()["images"] and acc.Tags()["images"][0].startswith("cam/gradcam")
    meta = next(tb.rglob("metadata.tsv")).read_text().splitlines()
    assert meta[0].split("\t") == ["true", "predicted", "correct"] and len(meta) == 25
    report(boxed_run, str(root), output=tmp_path / "r2.html", device="cpu", limit=10)  # a new report replaces the TensorBoard data
    assert len(list(tb.rglob("events.out.tfevents.*"))) == 1 and len(next(tb.rglob("metadata.tsv")).read_text().splitlines()) == 11
    if find_browser() is None:
        assert not os.environ.get("HEADSTART_REQUIRE_BROWSER"), "CI must render the report: apt-get install chromium chromium-driver"
        pytest.skip("Chromium/chromedriver not installed (apt-get install chromium chromium-driver); the page was checked as text only")
    seen = render_check(tmp_path / "r.html", screenshot=tmp_path / "r.png")
    assert [s[0] for s in seen["sections"]] == out["sections"]
    assert len(seen["images"]) == n_img
    broken = [i["alt"] for i in seen["images"] if not (i["complete"] and i["width"] > 0 and i["shown"] > 0)]
    assert broken == []
    shot = Image.open(tmp_path / "r.png")
    assert shot.width == 1280 and shot.height > 2000
    px = np.asarray(shot.convert("L"))
    assert px.std() > 20  # something was drawn, not a blank page


def test_cli_explain_bias_features_report(boxed, boxed_run, tmp_path):
    root, gt = boxed
    runner = CliRunner()
    img = str(sorted((root / "disc").glob("*"))[0])
    res = runner.invoke(app, ["explain", str(boxed_run), img, "--method", "eigencam", "--boxes", "--gt", str(gt), "-o", str(tmp_path / "e"), "--device", "cpu", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["method"] == "eigencam" and "iou" in out["images"][0]
    res = runner.invoke(app, ["bias", str(boxed_run), str(root), "--gt", str(gt), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert "border" in res.output and "centred-box baseline" in res.output
    res = runner.invoke(app, ["features", str(boxed_run), str(root), "--layer", "blocks.1", "--channel", "3", "-o", str(tmp_path / "f"), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "f" / "patches-blocks.1-3.png").is_file()
    res = runner.invoke(app, ["report", str(boxed_run), str(root), "-o", str(tmp_path / "r.html"), "--no-tensorboard", "--device", "cpu", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["tensorboard"] is None and (tmp_path / "r.html").is_file()
    res = runner.invoke(app, ["explain", str(boxed_run), img, "--method", "nope", "--device", "cpu"])
    assert isinstance(res.exception, HeadstartError) and "unknown CAM method 'nope'" in str(res.exception)
    res = runner.invoke(app, ["explain", str(boxed_run), img, "--gt", str(tmp_path / "none.csv"), "--device", "cpu"])
    assert isinstance(res.exception, HeadstartError) and "none.csv does not exist" in str(res.exception)


def test_report_on_a_folder_with_a_broken_file_names_it_and_goes_on(shapes_folder, tmp_path):
    run = tmp_path / "run"
    train(TrainConfig(data=str(shapes_folder), output=str(run), strategy="linear", epochs=2, **FAST))
    out = report(run, str(shapes_folder), output=tmp_path / "r.html", device="cpu", tensorboard=False)
    assert out["images"] == 30 and any("broken.jpg" in p for p, _ in out["skipped_files"])
    page = (tmp_path / "r.html").read_text()
    assert "unreadable file(s) left out" in page and "broken.jpg" in page


def test_knn_runs_refuse_gradient_cams_and_the_report_uses_eigencam(shapes_folder, tmp_path):
    run = tmp_path / "knn"
    train(TrainConfig(data=str(shapes_folder), output=str(run), strategy="knn", **FAST))
    img = str(next((shapes_folder / "disc").glob("*.png")))
    with pytest.raises(HeadstartError, match="nearest-neighbour vote.*eigencam"):
        explain(run, [img], device="cpu")
    assert explain(run, [img], method="eigencam", output=tmp_path / "e", device="cpu")["method"] == "eigencam"
    out = report(run, str(shapes_folder), output=tmp_path / "r.html", device="cpu", tensorboard=False)
    assert out["method"] == "eigencam" and "eigencam is used instead" in (tmp_path / "r.html").read_text()

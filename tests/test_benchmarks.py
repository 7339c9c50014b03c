"""The benchmark harness runs and writes well-formed results. Numbers are never asserted against
wall-clock limits here: a person (or ``python -m benchmarks.run compare``) compares them with
the committed results."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.run import ROW_KEYS, compare  # noqa: E402


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bench")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "smoke", "--out", str(out)], cwd=ROOT, capture_output=True, text=True, env=env, timeout=600
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return out


def test_smoke_suite_writes_json_markdown_and_plot(smoke):
    doc = json.loads((smoke / "smoke.json").read_text())
    assert doc["suite"] == "smoke" and doc["data"] == "digits"
    for key in ("cpu", "cores", "torch", "commit", "date"):
        assert key in doc["machine"]
    rows = doc["rows"]
    # every (labels per class, method) of the suite is present, the raw-pixel floor included
    assert {(r["labels_per_class"], r["method"]) for r in rows} == {
        (k, m) for k in (5, 20) for m in ("pixels+logreg", "knn", "linear", "partial")
    }
    for r in rows:
        assert ROW_KEYS <= set(r)
        assert 0.0 <= r["test_acc"] <= 1.0 and r["train_s"] >= 0.0
    # the floor is a real fit: far above chance (0.1) on digits
    assert min(r["test_acc"] for r in rows if r["method"] == "pixels+logreg") > 0.5
    assert len(doc["summary"]) == 8
    md = (smoke / "smoke.md").read_text()
    assert "| labels/class | method | test accuracy (mean ± sd)" in md and doc["machine"]["cpu"] in md
    assert md.count("\n| 5 |") == 4 and md.count("\n| 20 |") == 4
    png = (smoke / "smoke.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_compare_flags_a_drop_and_passes_an_identical_run(smoke, tmp_path, capsys):
    path = smoke / "smoke.json"
    assert compare(str(path), str(path)) == 0
    doc = json.loads(path.read_text())
    worse = next(s for s in doc["summary"] if s["method"] == "knn")
    worse["mean"] -= 0.05
    changed = tmp_path / "worse.json"
    changed.write_text(json.dumps(doc))
    assert compare(str(path), str(changed)) == 1
    assert "WORSE" in capsys.readouterr().out


def test_augment_summary_pairs_each_variant_with_the_none_run_of_its_seed():
    from benchmarks.augment import summarise, to_markdown

    def row(variant, seed, acc, tta):
        return {"case": "fashion-mnist@10", "variant": variant, "seed": seed, "test_acc": acc, "test_acc_tta": tta, "train_s": 1.0,
                "strategy": "partial", "freeze_stages": 5, "image_size": 112, "epochs": 60}

    rows = [row("none", 0, 0.70, 0.71), row("none", 1, 0.80, 0.80), row("light", 0, 0.74, 0.76), row("light", 1, 0.81, 0.83)]
    s = {r["variant"]: r for r in summarise(rows)}
    assert s["light"]["vs_none"] == pytest.approx(((0.74 - 0.70) + (0.81 - 0.80)) / 2)
    assert s["light"]["tta_gain"] == pytest.approx(((0.76 - 0.74) + (0.83 - 0.81)) / 2)
    assert s["none"]["test_acc"] == pytest.approx(0.75) and s["light"]["per_seed"] == [0.74, 0.81]
    md = to_markdown(list(s.values()), [], {"cpu": "x", "cores": 2, "torch": "t"}, "cmd", 60.0)
    assert "| fashion-mnist@10 | light | 0.7750 | +2.5 | 0.7950 | +2.0 |" in md


@pytest.mark.skipif(not os.path.isfile("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"),
                    reason="dataset-fashion-mnist is not installed")
def test_the_segmentation_scenes_are_labelled_by_the_garment_under_each_pixel(tmp_path):
    import numpy as np
    from PIL import Image

    from benchmarks.folders import build_fm_scenes
    from headstart.segment.masks import load_masks

    root = build_fm_scenes(tmp_path / "s", n_train=6, n_test=3, objects=(1, 1))
    ms = load_masks(root / "train", size=96)
    assert len(ms) == 6 and ms.num_classes == 11 and ms.classes[0] == "background"
    rows = (root / "train" / "masks.csv").read_text().splitlines()
    assert rows[0] == "path,mask" and len(rows) == 7
    for line in rows[1:]:
        image, mask = line.split(",")
        cls_folder = Path(image).parent.name
        values = set(np.unique(np.asarray(Image.open(mask))).tolist())
        assert len(values - {0}) == 1  # one garment, one class
        (v,) = values - {0}
        assert ms.classes[v].replace("/", "-") == cls_folder  # the classification copy is filed under the mask's class
    many = load_masks(build_fm_scenes(tmp_path / "m", n_train=4, n_test=2) / "test", size=96)
    assert len(many) == 2 and all(0.02 < float((m > 0).float().mean()) < 0.9 for m in many.masks)

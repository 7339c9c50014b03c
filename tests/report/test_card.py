"""The model card: written with every run, refreshed by eval, its numbers those of the run's own
files, and a user's own README.md never overwritten."""

from __future__ import annotations

import json
import re

import pytest

from headstart import TrainConfig, api, train
from headstart.report.card import render
from headstart.runfolder import write_card


@pytest.fixture(scope="module")
def run(shapes_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("card") / "run"
    train(TrainConfig(data=str(shapes_folder), output=str(out), backbone="resnet_small", strategy="linear", epochs=2, val_fraction=0.3,
                      progress=False, device="cpu"))
    return out


def _number(text, pattern):
    m = re.search(pattern, text)
    assert m, pattern
    return float(m.group(1))


def test_every_run_gets_a_card_whose_numbers_are_the_runs(run, shapes_folder):
    card = (run / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: headstart\npipeline_tag: image-classification\n")
    metrics = json.loads((run / "metrics.json").read_text())
    assert _number(card, r"validation \(\d+ held-out images\) \| accuracy ([0-9.]+)") == pytest.approx(metrics["val"]["accuracy"], abs=5e-5)
    for name in ("disc", "square", "stripes"):
        assert name in card
    assert "## Intended use" in card and f"headstart predict {run}" in card and "No scores yet" not in card
    ev = api.evaluate(run, str(shapes_folder))
    card = (run / "README.md").read_text()
    row = next(line for line in card.splitlines() if line.startswith(f"| {shapes_folder}"))
    assert _number(row, r"accuracy ([0-9.]+)") == pytest.approx(ev["accuracy"], abs=5e-5)
    assert _number(row, r"ECE ([0-9.]+)") == pytest.approx(ev["calibration"]["ece"], abs=5e-5)


def test_a_users_own_readme_is_left_alone(run):
    own = run.parent / "own"
    own.mkdir()
    for f in ("model.json", "metrics.json", "config.yaml"):
        (own / f).write_text((run / f).read_text())
    (own / "README.md").write_text("# my notes\n")
    assert write_card(own) is None and (own / "README.md").read_text() == "# my notes\n"
    (own / "README.md").unlink()
    assert write_card(own).read_text().startswith("---\n")
    assert write_card(run.parent / "nothing") is None


def test_cards_of_other_kinds_and_audits():
    seg = render({"kind": "segmenter", "backbone": "b", "classes": ["bg", "x"], "upsample": "transposed"},
                 {"images": 40, "val": {"images": 6, "miou": 0.61234, "pixel_accuracy": 0.9, "boundary_f": 0.5}}, {})
    assert "pipeline_tag: image-segmentation" in seg and "mIoU 0.6123" in seg and "upsampling: transposed" in seg
    det = render({"kind": "detector", "backbone": "b", "classes": ["a"], "detector": "fcos"},
                 {"images": 40, "boxes": 55, "val": {"images": 6, "map_50": 0.5, "map": 0.25, "corloc": 0.75}}, {},
                 evals={"eval.json": {"data": "t.csv", "images": 9, "map_50": 0.4, "map": 0.2, "corloc": 0.5}})
    assert "object-detection" in det and "boxes: 55" in det and "mAP@0.5 0.4000" in det and "headstart detect predict" in det
    flagged = render({"kind": "classifier", "classes": ["a", "b"]}, {}, {},
                     bias={"flags": [{"message": "class a: the CAM sits on the border"}]},
                     audit={"flagged": ["rotate"], "max_drop": 0.05, "families": {"rotate": {"flagged_at": 30}}})
    assert "class a: the CAM sits on the border" in flagged and "rotate changes the model's answers" in flagged and "magnitude 30" in flagged
    assert "No scores yet" in flagged

"""The README's demo, end to end on real data (Fashion-MNIST if installed, else digits)."""

from __future__ import annotations

import json

import pytest

from headstart.demo import run_demo


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path):
    rows = run_demo(output=str(tmp_path / "demo"), labels_per_class=10, device="cpu")
    assert [r["strategy"] for r in rows] == ["knn", "linear", "partial", "auto"]
    assert (tmp_path / "demo" / "auto" / "advice.json").is_file()
    for r in rows:
        assert (tmp_path / "demo" / r["strategy"] / "model.json").is_file()
        evals = list((tmp_path / "demo" / r["strategy"]).glob("eval-*.json"))
        assert evals and json.loads(evals[0].read_text())["accuracy"] == pytest.approx(r["accuracy"])
        # 10 classes: chance is 0.1; ImageNet features with 10 labels per class reach far more
        assert r["accuracy"] > 0.6
    assert len(list((tmp_path / "demo" / "sample-images").glob("*.png"))) == 6
    best = max(rows, key=lambda r: r["accuracy"])
    page = (tmp_path / "demo" / best["strategy"] / "report.html").read_text()
    assert all(f'id="{s}"' in page for s in ("summary", "training", "errors", "gradcam", "bias", "features", "config"))

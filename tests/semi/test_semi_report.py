"""The report's section on the unlabeled images: the pool rebuilt as training read it, the
curves, and the most confident wrong pseudo-labels against a naive recount."""

from __future__ import annotations

import json

import numpy as np

from headstart import TrainConfig, train
from headstart.predictor import Predictor
from headstart.semi.report import pool_section, rebuild_pool


def test_the_section_shows_the_pool_curves_and_the_most_confident_wrong_pseudo_labels(tmp_path):
    res = train(TrainConfig(
        data="digits", labels_per_class=3, unlabeled="pool", unlabeled_limit=300, strategy="linear", method="pseudolabel",
        method_options={"view": "plain", "threshold": "0.2"}, epochs=4, image_size=32, device="cpu", progress=False,
        output=str(tmp_path / "r"),
    ))
    splits = json.loads((res.run_dir / "splits.json").read_text())
    assert splits["unlabeled"]["used"] == 300 and splits["unlabeled"]["limited_to"] == 300
    pool, config = rebuild_pool(res.run_dir)
    assert len(pool) == 300 and config.unlabeled == "pool"
    predictor = Predictor(res.run_dir, device="cpu")
    section = pool_section(res.run_dir, predictor)
    kinds = [b[0] for b in section.blocks]
    assert kinds.count("figure") == 2  # the curves and the sheet
    rows = section.blocks[-1][1]
    probs = predictor.proba_tensor(predictor.images_of(pool.images, num_workers=0))
    pred, conf = probs.argmax(1), probs.max(1)
    wrong = np.flatnonzero(pred != pool.truth)
    naive = sorted(wrong, key=lambda i: -conf[i])[:16]
    assert [r["pool image"] for r in rows] == [int(i) for i in naive]
    assert all(r["pseudo-label"] != r["true"] for r in rows)
    history = json.loads((res.run_dir / "metrics.json").read_text())["history"]
    assert all(0 <= h["pool_mask"] <= 1 and "pool_pseudo_acc" in h for h in history)
    assert history[-1]["pool_pseudo_acc"] is not None


def test_a_run_without_unlabeled_images_has_no_section(tmp_path):
    res = train(TrainConfig(data="digits", labels_per_class=3, strategy="linear", epochs=1, image_size=32, device="cpu", progress=False,
                            output=str(tmp_path / "r")))
    assert pool_section(res.run_dir) is None

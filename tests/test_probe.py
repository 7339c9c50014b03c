"""``probe``: the weighted kNN and the linear probe against naive references, the stage features
against the network run directly, and a whole probe of two bodies on a tiny folder."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from headstart import api_probe
from headstart.api_probe import (
    LINEAR_C,
    LINEAR_MAX_ITER,
    _summarise,
    fit_linear,
    knn_predict,
    probe,
    resolve_stages,
    stage_features,
)
from headstart.backbones import create_backbone
from headstart.body import load_body, save_body
from headstart.data import resolve
from headstart.data.splits import few_shot
from headstart.engine.prepare import Prepare
from headstart.errors import ConfigError


def naive_knn(train: np.ndarray, labels: np.ndarray, test: np.ndarray, k: int, t: float) -> list[int]:
    """One test image at a time: similarities sorted (ties by position), exp(sim / T) summed per
    class over the k nearest, the largest sum (ties: the lowest class)."""
    out = []
    classes = sorted(set(labels.tolist()))
    for q in test:
        sims = [float(q @ x) / (math.sqrt(float(q @ q)) * math.sqrt(float(x @ x))) for x in train]
        order = sorted(range(len(train)), key=lambda j: -sims[j])[: min(k, len(train))]
        votes = {c: 0.0 for c in classes}
        for j in order:
            votes[int(labels[j])] += math.exp(sims[j] / t)
        out.append(max(classes, key=lambda c: (votes[c], -c)))
    return out


@pytest.mark.parametrize("k,t", [(1, 0.07), (5, 0.07), (7, 0.5), (20, 1.0), (100, 0.1)])
def test_knn_matches_a_naive_loop(k, t):
    rng = np.random.default_rng(k)
    train = rng.normal(size=(40, 6))
    labels = rng.integers(0, 4, size=40)
    test = rng.normal(size=(25, 6)) + 0.3
    got = knn_predict(train, labels, test, k=k, temperature=t, num_classes=4, chunk=7)
    assert got.tolist() == naive_knn(train, labels, test, k, t)


def test_knn_weights_by_similarity_and_breaks_ties_as_documented():
    a, b = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    q = np.array([[1.0, 0.2]])
    # one close neighbour of class 1 outweighs two far ones of class 0 at a low temperature...
    train, labels = np.stack([a, b, b]), np.array([1, 0, 0])
    assert knn_predict(train, labels, q, k=3, temperature=0.07).tolist() == [1]
    # ...and not at a high one, where the vote is nearly a count
    assert knn_predict(train, labels, q, k=3, temperature=100.0).tolist() == [0]
    # equal similarities: the earlier labeled image is the nearer; equal sums: the lower class
    twins = np.stack([a, a])
    assert knn_predict(twins, np.array([1, 0]), q, k=1, temperature=0.07).tolist() == [1]
    assert knn_predict(twins, np.array([0, 1]), q, k=1, temperature=0.07).tolist() == [0]
    assert knn_predict(twins, np.array([1, 0]), q, k=2, temperature=0.07).tolist() == [0]
    # a tiny temperature does not overflow: the nearest neighbour decides
    assert knn_predict(train, labels, q, k=3, temperature=1e-4).tolist() == [1]


def test_linear_probe_is_standardised_l2_logistic_regression():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 8)
    scales = 10.0 ** np.linspace(-2, 2, 12)  # standardising matters at these spreads
    x = (rng.normal(size=(24, 12)) + 0.8 * np.eye(3)[y] @ rng.normal(size=(3, 12))) * scales
    x_test = (rng.normal(size=(30, 12)) + 0.8 * rng.normal(size=(1, 12))) * scales
    mu, sd = x.mean(0), x.std(0)
    ref = LogisticRegression(C=1.0, max_iter=LINEAR_MAX_ITER).fit((x - mu) / sd, y)
    pipe = fit_linear(x, y)
    assert LINEAR_C == 1.0 and pipe[-1].C == 1.0 and pipe[-1].penalty in ("l2", "deprecated")
    assert pipe.predict(x_test).tolist() == ref.predict((x_test - mu) / sd).tolist()
    np.testing.assert_allclose(pipe.predict_proba(x_test), ref.predict_proba((x_test - mu) / sd), atol=1e-6)


def test_stage_features_are_the_pooled_stage_outputs():
    torch.manual_seed(0)
    model = create_backbone("resnet_small", num_classes=1, weights=None)
    for m in model.modules():  # running statistics unlike a batch's, so train mode would show
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
    model.train()
    x = torch.randint(0, 256, (5, 3, 20, 20), dtype=torch.uint8)
    prepare = Prepare(model.preprocess, 32, torch.device("cpu"))
    got = stage_features(model, x, stages=[4, 0, 2], prepare=prepare, device=torch.device("cpu"), batch_size=2)
    assert sorted(got) == [0, 2, 4]
    model.eval()
    with torch.no_grad():
        for i in (0, 2, 4):
            want = model.pool(model.forward_stages(prepare(x), 0, i + 1))
            torch.testing.assert_close(got[i], want, rtol=1e-4, atol=1e-5)


def test_resolve_stages_and_unknown_stage():
    model = create_backbone("resnet_small", num_classes=1, weights=None)
    assert resolve_stages(model, "last") == [4]
    assert resolve_stages(model, "all") == [0, 1, 2, 3, 4]
    assert resolve_stages(model, "block3,stem") == [0, 3]
    assert resolve_stages(model, ["block1"]) == [1]
    with pytest.raises(ConfigError, match="stem, block1, block2, block3, block4"):
        resolve_stages(model, ["block9"])


def test_summary_sd_is_the_sample_sd():
    rows = [{"body": "b", "stage": "s", "labels_per_class": 1, "seed": s, "linear_acc": a, "knn_acc": a / 2}
            for s, a in enumerate((0.5, 0.7, 0.9))]
    rows.append({"body": "b", "stage": "s", "labels_per_class": 2, "seed": 0, "linear_acc": 0.4, "knn_acc": 0.3})
    one, two = _summarise(rows)
    assert one["linear_mean"] == pytest.approx(0.7) and one["linear_sd"] == pytest.approx(0.2)
    assert one["knn_sd"] == pytest.approx(0.1) and one["seeds"] == [0, 1, 2]
    assert two["linear_sd"] == 0.0 and two["knn_mean"] == pytest.approx(0.3)


def test_random_bodies_are_the_same_network_every_time():
    a = load_body("random:resnet_small").model.state_dict()
    torch.manual_seed(99)
    b = load_body("random:resnet_small").model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_probe_two_bodies_on_the_same_draws(shapes_folder, shapes_test_folder, tmp_path, monkeypatch):
    torch.manual_seed(123)
    other = create_backbone("resnet_small", num_classes=1, weights=None)
    body_dir = save_body(tmp_path / "mybody", model=other, image_size=24, pretext_head=None,
                         meta={"pretext": {"method": "test"}}, config={}, metrics={})
    assert load_body(str(body_dir)).image_size == 24

    drawn: list[tuple[int, int]] = []
    scored: list[tuple[list[int], np.ndarray]] = []
    real_few_shot, real_score = api_probe.few_shot, api_probe.score_draw

    def recording_few_shot(labels, k, seed, **kw):
        drawn.append((k, seed))
        return real_few_shot(labels, k, seed, **kw)

    def recording_score(train_feats, train_labels, test_feats, test_labels, **kw):
        scored.append((kw["draw"].tolist(), np.asarray(train_feats).copy()))
        return real_score(train_feats, train_labels, test_feats, test_labels, **kw)

    monkeypatch.setattr(api_probe, "few_shot", recording_few_shot)
    monkeypatch.setattr(api_probe, "score_draw", recording_score)
    out = tmp_path / "probe"
    result = probe(["random:resnet_small", str(body_dir)], str(shapes_folder), test=str(shapes_test_folder),
                   labels_per_class=(2, 1), seeds=(0, 1), stages="all", output=out, device="cpu", batch_size=8,
                   show_progress=False)

    names = [b["name"] for b in result["bodies"]]
    assert names == ["random:resnet_small", "mybody"]
    assert result["image_size"] == 24  # the first body folder's size, for every body
    stage_names = ["stem", "block1", "block2", "block3", "block4"]
    want = set(itertools.product(names, stage_names, (1, 2), (0, 1)))
    got = [(r["body"], r["stage"], r["labels_per_class"], r["seed"]) for r in result["rows"]]
    assert len(got) == len(want) and set(got) == want
    assert all(0.0 <= r["linear_acc"] <= 1.0 and 0.0 <= r["knn_acc"] <= 1.0 for r in result["rows"])
    assert result["num_test"] == 18 and result["knn"] == {**result["knn"], "k": 20, "temperature": 0.07}
    assert result["linear"]["C"] == 1.0

    # one draw per K and seed, shared by every body and stage: few_shot of the train labels
    assert sorted(drawn) == [(1, 0), (1, 1), (2, 0), (2, 1)]
    labels = resolve(str(shapes_folder)).labels
    for d in result["draws"]:
        assert d["indices"] == few_shot(labels, d["labels_per_class"], d["seed"])[0].tolist()
    draws = {(d["labels_per_class"], d["seed"]): d["indices"] for d in result["draws"]}
    assert len(scored) == len(result["rows"])
    for row, (draw, feats) in zip(result["rows"], scored):
        assert draw == draws[(row["labels_per_class"], row["seed"])] and len(feats) == len(draw)
    # and the features scored are those images' own: the same draw of one body's stage, seen
    # through another draw that shares images, gives the same vectors
    first = [(d, f) for (d, f), r in zip(scored, result["rows"]) if (r["body"], r["stage"]) == ("mybody", "block4")]
    common = sorted(set(first[0][0]) & set(first[-1][0]))
    assert common
    rows_a = [first[0][1][first[0][0].index(i)] for i in common]
    rows_b = [first[-1][1][first[-1][0].index(i)] for i in common]
    np.testing.assert_array_equal(np.stack(rows_a), np.stack(rows_b))
    assert len(result["summary"]) == 2 * 5 * 2
    assert all(s["seeds"] == [0, 1] for s in result["summary"])
    assert set(result["best_stage"]) == set(names) and set(result["best_stage"].values()) <= set(stage_names)
    assert json.loads((out / "probe.json").read_text())["rows"] == result["rows"]
    md = (out / "probe.md").read_text()
    assert "| body | stage | labels/class | linear | kNN |" in md and "mybody" in md and "24px" in md and "C=1.0" in md
    assert (out / "probe.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_probe_refuses_unknown_bodies_stages_and_a_folder_without_test(shapes_folder, shapes_test_folder, tmp_path):
    with pytest.raises(ConfigError, match=r"'no/such/body'.*imagenet:ARCH.*random:ARCH"):
        probe(["no/such/body"], str(shapes_folder), test=str(shapes_test_folder), show_progress=False)
    with pytest.raises(ConfigError, match=r"'deep'.*stem, block1"):
        probe(["random:resnet_small"], str(shapes_folder), test=str(shapes_test_folder), stages=["deep"], show_progress=False)
    with pytest.raises(ConfigError, match="--test DIR"):
        probe(["random:resnet_small"], str(shapes_folder), labels_per_class=(1,), device="cpu", show_progress=False)

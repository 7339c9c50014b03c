"""Strategies, learning-rate groups, rules and the kNN head, checked against plain reference
computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from headstart.backbones import create_backbone
from headstart.finetune import STRATEGIES, frozen_stages_for, param_groups, rules
from headstart.finetune.knn import KNNHead


def test_strategies_freeze_what_they_say():
    n = 9
    assert frozen_stages_for("linear", num_stages=n, freeze_stages=None) == n
    assert frozen_stages_for("knn", num_stages=n, freeze_stages=None) == n
    assert frozen_stages_for("full", num_stages=n, freeze_stages=3) == 0
    assert frozen_stages_for("partial", num_stages=n, freeze_stages=None) == 4
    assert frozen_stages_for("partial", num_stages=n, freeze_stages=7) == 7
    with pytest.raises(ValueError, match="between 0 and 9"):
        frozen_stages_for("partial", num_stages=n, freeze_stages=10)
    assert set(STRATEGIES.names()) == {"linear", "partial", "full", "knn"}


@pytest.mark.parametrize("decay", [1.0, 0.5])
def test_param_groups_rates_and_coverage(decay):
    bb = create_backbone("resnet18", num_classes=3, weights=None)
    bb.freeze(2)
    groups = param_groups(bb, lr=1e-3, backbone_lr_mult=0.1, stage_lr_decay=decay, weight_decay=0.05)
    by_name = {g["name"]: g for g in groups}
    assert by_name["head"]["lr"] == pytest.approx(1e-3)
    top = bb.num_stages - 1
    for i in range(2, bb.num_stages):
        expected = 1e-3 * 0.1 * decay ** (top - i)
        assert by_name[bb.stage_names[i]]["lr"] == pytest.approx(expected)
        assert by_name[f"{bb.stage_names[i]}.no_decay"]["weight_decay"] == 0.0
    for frozen in bb.stage_names[:2]:
        assert frozen not in by_name
    # every trainable parameter appears exactly once, frozen ones never
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids))
    trainable = {id(p) for p in bb.parameters() if p.requires_grad}
    assert set(ids) == trainable
    assert all(p.ndim <= 1 for g in groups if g["name"].endswith("no_decay") for p in g["params"])


def test_rules():
    assert rules.default_image_size(native_size=28, weights_size=224, strategy="full") == 112
    assert rules.default_image_size(native_size=None, weights_size=224, strategy="linear") == 224
    assert rules.default_image_size(native_size=None, weights_size=224, strategy="partial") == 160
    assert rules.default_image_size(native_size=28, weights_size=32, strategy="full") == 32  # built for small images: kept
    assert rules.default_image_size(native_size=500, weights_size=32, strategy="linear") == 32
    assert rules.default_val_fraction(10) == 0.0 and rules.default_val_fraction(20) == 0.2
    assert rules.default_epochs(num_train=100, batch_size=16, strategy="partial") == 60
    assert rules.default_epochs(num_train=60000, batch_size=64, strategy="full") == 3
    assert rules.default_epochs(num_train=800, batch_size=64, strategy="full") == 47  # ceil(600/13)
    assert rules.default_batch_size(num_train=100) == 16
    assert rules.default_batch_size(num_train=5000) == 64
    assert rules.default_batch_size(num_train=10) == 8
    assert rules.knn_k_candidates(min_class_count=4) == [1, 3]


def _naive_knn(bank, labels, queries, k, num_classes):
    out = []
    for q in queries:
        sims = [float(np.dot(q, b) / (np.linalg.norm(q) * np.linalg.norm(b))) for b in bank]
        order = sorted(range(len(bank)), key=lambda i: -sims[i])[:k]
        votes = [0.0] * num_classes
        for i in order:
            votes[int(labels[i])] += 1.0 + 1e-3 * sims[i]
        out.append(int(np.argmax(votes)))
    return out


@pytest.mark.parametrize("k", [1, 3, 5, 8])
def test_knn_head_matches_a_naive_search(k):
    rng = np.random.default_rng(k)
    bank = rng.normal(size=(40, 6)).astype(np.float32)
    labels = rng.integers(0, 4, size=40)
    queries = rng.normal(size=(15, 6)).astype(np.float32)
    head = KNNHead(torch.from_numpy(bank), torch.from_numpy(labels), 4, k)
    got = head(torch.from_numpy(queries)).argmax(1).tolist()
    assert got == _naive_knn(bank, labels, queries, k, 4)
    probs = head(torch.from_numpy(queries)).softmax(1)
    torch.testing.assert_close(probs.sum(1), torch.ones(15))
    if k == 1:
        from sklearn.neighbors import KNeighborsClassifier

        sk = KNeighborsClassifier(n_neighbors=1, metric="cosine").fit(bank, labels)
        assert got == sk.predict(queries).tolist()

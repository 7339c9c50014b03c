"""Measurements checked against naive references: the probe against scikit-learn's own
cross-validation, the BatchNorm distance against a closed form computed with numpy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from headstart.advise.measure import probe_accuracy, size_stats, stage_pass, subsample
from headstart.backbones.base import IMAGENET, Backbone, Preprocess


def tiny_backbone() -> Backbone:
    torch.manual_seed(0)
    stages = [
        nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU()),
        nn.Sequential(nn.Conv2d(4, 6, 3, padding=1, stride=2), nn.BatchNorm2d(6), nn.ReLU()),
    ]
    model = Backbone(name="tiny", stages=stages, stage_names=["s1", "s2"], num_features=6, cam_index=1,
                     preprocess=Preprocess(**IMAGENET, image_size=16), num_classes=3)
    for m in model.modules():  # running statistics unlike the data's, as after pretraining elsewhere
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return model


def to_float(x: torch.Tensor) -> torch.Tensor:
    return x.float() / 255.0


def test_probe_equals_scikit_learns_cross_validation_of_the_same_pipeline():
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 25)
    x = rng.normal(size=(100, 12)) + y[:, None] * 0.6
    ours = probe_accuracy(x, y, seed=3)
    pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300, tol=1e-3))
    ref = cross_val_score(pipe, x, y, cv=StratifiedKFold(5, shuffle=True, random_state=3)).mean()
    assert ours == pytest.approx(ref)  # equal folds → equal mean accuracy


def test_probe_separates_informative_from_useless_features():
    rng = np.random.default_rng(1)
    y = np.repeat(np.arange(3), 30)
    informative = rng.normal(size=(90, 8)) + 4 * np.eye(3, 8)[y]
    noise = rng.normal(size=(90, 8))
    assert probe_accuracy(informative, y) > 0.95
    assert probe_accuracy(noise, y) < 0.6
    assert probe_accuracy(informative[::30], y[::30]) is None  # one image per class: no fold can test it


def test_stage_pass_features_and_batchnorm_distance_match_naive_references():
    model = tiny_backbone()
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (20, 3, 16, 16), generator=g, dtype=torch.uint8)
    feats, kl = stage_pass(model, x, to_float, batch_size=7)
    with torch.no_grad():
        model.eval()
        s1 = model.stages[0](to_float(x))
        s2 = model.stages[1](s1)
        # the input of the second stage's BatchNorm, for the closed-form KL
        bn_in = model.stages[1][0](s1).double().numpy()
    np.testing.assert_allclose(feats[0], s1.mean(dim=(2, 3)).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(feats[1], s2.mean(dim=(2, 3)).numpy(), rtol=1e-5, atol=1e-6)

    bn = model.stages[1][1]
    mu = bn_in.mean(axis=(0, 2, 3))
    var = bn_in.var(axis=(0, 2, 3))
    rm, rv = bn.running_mean.double().numpy(), bn.running_var.double().numpy() + bn.eps
    expected = np.mean(0.5 * (var / rv + (mu - rm) ** 2 / rv - 1 - np.log(var / rv)))
    names = dict(kl)
    assert set(names) == {"0.1", "1.1"}  # layer names are relative to the stages: the stage index comes first
    assert names["1.1"] == pytest.approx(expected, rel=1e-6)


def test_kl_is_zero_when_running_statistics_match_the_data():
    model = tiny_backbone()
    x = torch.randint(0, 256, (16, 3, 16, 16), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    with torch.no_grad():
        inp = model.stages[0][0](to_float(x)).double()
        bn = model.stages[0][1]
        bn.running_mean.copy_(inp.mean(dim=(0, 2, 3)))
        bn.running_var.copy_(inp.var(dim=(0, 2, 3), unbiased=False) - bn.eps)
    _, kl = stage_pass(model, x, to_float)
    assert dict(kl)["0.1"] == pytest.approx(0.0, abs=1e-6)


def test_random_init_pass_uses_batch_statistics_and_changes_nothing():
    model = tiny_backbone()
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randint(0, 256, (12, 3, 16, 16), generator=torch.Generator().manual_seed(2), dtype=torch.uint8)
    feats, kl = stage_pass(model, x, to_float, batch_size=12, batch_stats=True)
    assert kl == []  # placeholders of a random network are not compared
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert model.training and all(not m._forward_pre_hooks for m in model.modules())
    with torch.no_grad():  # batch statistics: each channel of the first BatchNorm output has mean 0
        z = model.stages[0][1].eval()  # reference computed by hand instead
        conv = model.stages[0][0](to_float(x))
        ref = (conv - conv.mean(dim=(0, 2, 3), keepdim=True)) / torch.sqrt(conv.var(dim=(0, 2, 3), unbiased=False, keepdim=True) + z.eps)
        ref = torch.relu(ref * z.weight.view(1, -1, 1, 1) + z.bias.view(1, -1, 1, 1))
    np.testing.assert_allclose(feats[0], ref.mean(dim=(2, 3)).numpy(), rtol=1e-4, atol=1e-5)


def test_size_stats_and_stratified_subsample():
    s = size_stats(np.array([0, 0, 0, 1, 2, 2]), ["a", "b", "c"])
    assert (s.total, s.min, s.median, s.imbalance) == (6, 1, 2.0, 3.0)
    labels = np.repeat(np.arange(4), [100, 200, 300, 400])
    keep = subsample(labels, 100, seed=0)
    counts = np.bincount(labels[keep])
    assert len(keep) <= 100 and list(counts) == [10, 20, 30, 40]
    assert len(np.unique(keep)) == len(keep)
    assert np.array_equal(subsample(labels[:50], 100, seed=0), np.arange(50))

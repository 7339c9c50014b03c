"""``finetune.plan``: every default of a run and its reason, from data facts alone."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from headstart.config import TrainConfig
from headstart.data import stratified_split
from headstart.finetune.plan import DataFacts, ModelFacts, plan

LITE0 = ModelFacts(num_stages=9, stage_names=("stem", "blocks.0", "blocks.1", "blocks.2", "blocks.3", "blocks.4", "blocks.5", "blocks.6", "head"), weights_size=224)


def _plan(counts, size=28, *, is_array=True, **cfg):
    return plan(TrainConfig(data="x", **cfg), DataFacts(tuple(counts), size, is_array), LITE0)


def test_ten_digits_per_class_fine_tuned_partially():
    p = _plan([10] * 10, 8, strategy="partial")
    assert (p.val_fraction, p.num_train, p.batch_size, p.epochs, p.lr) == (0.0, 100, 16, 60, 1e-3)  # 600/7 steps capped at 60 epochs
    assert (p.frozen, p.image_size, p.augment, p.augment_strength, p.backbone_lr_mult) == (4, 112, "light", 1.0, 0.1)
    assert p.storage_size is None  # an array set stays native, resized per batch
    assert list(p.reasons) == ["val_fraction", "freeze_stages", "image_size", "augment", "epochs"]
    assert "fewer than 20, so no split" in p.reasons["val_fraction"]
    assert p.reasons["freeze_stages"].startswith("first 4 of 9 stages frozen") and "blocks.2" in p.reasons["freeze_stages"]
    assert p.reasons["image_size"] == "112px: native 8-px images, trainable layers (weights trained at 224px)"
    assert p.reasons["epochs"] == "60 epochs ≈ 420 steps for 100 images"


def test_a_linear_probe_on_photos_with_a_validation_split():
    p = _plan([25] * 8, 300, is_array=False, strategy="linear")
    # 20 % of 25 = 5 held out per class: 160 train, batch 2^floor(log2(40)) = 32, ceil(600 / 5) = 120 epochs (cap 200)
    assert (p.val_fraction, p.num_train, p.batch_size, p.epochs) == (0.2, 160, 32, 120)
    assert (p.frozen, p.image_size, p.augment, p.storage_size) == (9, 224, "none", 224)
    assert "20% held out" in p.reasons["val_fraction"]
    assert "freeze_stages" not in p.reasons
    assert p.reasons["image_size"] == "224px: native 300-px images (median side), frozen features (weights trained at 224px)"
    assert p.reasons["augment"].startswith("none: the frozen body's features are computed once")


def test_knn_trains_nothing_and_full_freezes_nothing():
    knn = _plan([30] * 3, None, strategy="knn")
    assert knn.resolved(TrainConfig(data="x", strategy="knn"))["epochs"] == 0 and "epochs" not in knn.reasons
    assert knn.reasons["image_size"].startswith("224px: images of unknown size, frozen features")
    full = _plan([30] * 3, None, strategy="full")
    assert (full.frozen, full.image_size) == (0, 160)  # trainable layers: at most 160 px


def test_what_the_user_gives_is_used_and_given_no_reason():
    p = _plan([40] * 5, 28, strategy="partial", freeze_stages=2, image_size=64, epochs=7, batch_size=8, lr=0.01,
              augment="strong", augment_strength=0.5, val_fraction=0.5, backbone_lr_mult=0.3)
    assert (p.frozen, p.image_size, p.epochs, p.batch_size, p.lr, p.augment, p.augment_strength, p.val_fraction, p.backbone_lr_mult) == (
        2, 64, 7, 8, 0.01, "strong", 0.5, 0.5, 0.3)
    assert p.num_train == 100 and p.reasons == {}
    sep = _plan([40] * 5, 28, strategy="linear", val="other/")
    assert sep.val_fraction == 0.0 and sep.num_train == 200 and sep.reasons["val"] == "validation on the separate set other/"


@pytest.mark.parametrize(
    "counts, strategy, fraction",
    list(itertools.product([(1, 1), (2, 3), (5,) * 4, (19, 20, 21), (20,) * 10, (7, 150, 33)], ["linear", "partial", "full", "knn"], [None, 0.1, 0.5])),
)
def test_over_a_grid_the_plan_agrees_with_a_real_split_and_the_rules(counts, strategy, fraction):
    p = _plan(counts, 28, strategy=strategy, val_fraction=fraction)
    labels = np.repeat(np.arange(len(counts)), counts)
    expected_fraction = fraction if fraction is not None else (0.2 if min(counts) >= 20 else 0.0)
    assert p.val_fraction == expected_fraction
    n_train = len(stratified_split(labels, expected_fraction, 0)[0]) if expected_fraction > 0 else len(labels)
    assert p.num_train == n_train  # the count the split will really leave
    # and by hand: each class of two or more gives round(n·f) to validation, at least one, never all
    held = [0 if n < 2 or not expected_fraction else min(n - 1, max(1, int(n * expected_fraction + 0.5))) for n in counts]
    assert n_train == sum(counts) - sum(held)
    assert 8 <= p.batch_size <= 64 and p.batch_size & (p.batch_size - 1) == 0 and p.batch_size <= max(8, n_train // 4)
    steps = -(-n_train // p.batch_size)
    cap = 200 if strategy == "linear" else 60
    assert p.epochs == min(cap, max(3, -(-600 // steps)))
    assert p.frozen == {"linear": 9, "knn": 9, "full": 0, "partial": 4}[strategy]
    assert p.augment == ("none" if strategy in ("linear", "knn") else "light")
    assert ("val_fraction" in p.reasons) == (fraction is None)
    assert ("epochs" in p.reasons) == (strategy != "knn")

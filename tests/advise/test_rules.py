"""The advisor's rules and decision, on hand-written measurements: every cell of the 2×2 table,
the rows it leaves out, and the numbers each rule is documented to produce."""

from __future__ import annotations

import math

import pytest

from headstart.advise import candidates, decide, rules
from headstart.advise.search import successive_halving

STAGES = ["stem", "b0", "b1", "b2", "b3", "b4", "b5", "b6", "head"]
# Fashion-MNIST-like: the probe rises to stage 7 and falls after it
FAR_PROBE = [0.48, 0.50, 0.62, 0.63, 0.68, 0.80, 0.84, 0.80, 0.78]


def measurements(*, per_class: int, kl: float | None, probe, random_probe, pretrained: bool = True, classes: int = 10) -> dict:
    return {
        "size": {"total": per_class * classes, "min_per_class": per_class, "median_per_class": per_class, "imbalance": 1.0, "per_class": {}},
        "measured_on": per_class * classes,
        "stage_names": STAGES,
        "probe": probe,
        "random_probe": random_probe,
        "bn_kl": None,
        "bn_kl_mean": kl,
        "pretrained": pretrained,
    }


def test_size_bands_at_their_documented_edges():
    assert rules.size_band(1).value == "tiny"
    assert rules.size_band(rules.TINY_PER_CLASS - 1).value == "tiny"
    assert rules.size_band(rules.TINY_PER_CLASS).value == "small"
    assert rules.size_band(rules.LARGE_PER_CLASS - 1).value == "small"
    assert rules.size_band(rules.LARGE_PER_CLASS).value == "large"


def test_bn_similarity_maps_the_calibration_points():
    assert rules.bn_similarity(0.13) == 1.0  # natural-photo crops
    assert rules.bn_similarity(0.63) == 0.0  # digits
    assert rules.bn_similarity(0.36) == pytest.approx((0.5 - 0.36) / 0.35)  # Fashion-MNIST, linear in between
    assert rules.bn_similarity(None) is None


def test_transfer_gain_is_the_share_of_remaining_error_removed():
    assert rules.transfer_gain(0.84, 0.60) == pytest.approx(0.24 / 0.40)
    assert rules.transfer_gain(0.50, 0.60) == 0.0  # pretraining hurts: clipped, not negative
    assert rules.transfer_gain(None, 0.6) is None


def test_similarity_is_the_lowest_signal_measured():
    s = rules.similarity(0.4, 0.9)
    assert s.value == pytest.approx(0.4) and "different" in s.reason
    assert "similar to" in rules.similarity(0.95, 0.7).reason
    assert rules.similarity(None, 0.9).value == pytest.approx(0.9)
    assert rules.similarity(None, None).value is None


def test_freeze_depth_from_the_probe_curve():
    c = rules.freeze_from_probe(FAR_PROBE, 9)
    # best 0.84; the first stage within 5 % (>= 0.798) is stage index 5 (0.80): freeze 5
    assert c.value == 5 and "within 5%" in c.reason
    rising = [0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95]
    assert rules.freeze_from_probe(rising, 9).value == 8  # features keep improving: only the last stage trains
    flat = [0.9] * 9
    assert rules.freeze_from_probe(flat, 9).value == 1  # the stem stays frozen even when it is as good as any stage
    assert rules.freeze_from_probe(None, 9).value == 4
    assert rules.freeze_from_probe([None] * 9, 9).value == 4


@pytest.mark.parametrize(
    "band, similar, pretrained, expected",
    [
        ("tiny", False, True, "linear"),
        ("tiny", True, True, "linear"),
        ("small", True, True, "linear"),
        ("small", False, True, "partial"),
        ("small", None, True, "partial"),
        ("large", True, True, "partial"),
        ("large", False, True, "full"),
        ("small", True, False, "full"),
        ("tiny", False, False, "full"),
    ],
)
def test_strategy_table(band, similar, pretrained, expected):
    assert rules.strategy(band=band, similar=similar, pretrained=pretrained).value == expected


def test_body_rate_and_augmentation():
    assert rules.body_lr_mult(strategy_name="partial", similar=False, pretrained=True).value == 1.0
    assert rules.body_lr_mult(strategy_name="partial", similar=True, pretrained=True).value == 0.1
    assert rules.body_lr_mult(strategy_name="full", similar=True, pretrained=False).value == 1.0
    assert rules.augment_strength(strategy_name="linear", band="small", similarity_score=0.1).value == 0.0
    weak = rules.augment_strength(strategy_name="partial", band="large", similarity_score=0.9).value
    strong = rules.augment_strength(strategy_name="partial", band="small", similarity_score=0.1).value
    assert 0 < weak < strong <= 1


def test_decide_small_far_data_is_partial_at_the_probe_depth_with_a_full_rate_body():
    m = measurements(per_class=10, kl=0.36, probe=FAR_PROBE, random_probe=[0.57, 0.59, 0.56, 0.42, 0.4, 0.2, 0.2, 0.2, 0.2])
    a = decide(m, backbone="efficientnet_lite0", image_size=112)
    assert a.decision["strategy"] == "partial"
    assert a.decision["freeze_stages"] == 5
    assert a.decision["backbone_lr_mult"] == 1.0
    assert a.decision["augment"] == "light"
    # the schedule is finetune.rules' for 100 images with no validation split (10 per class < 20)
    assert (a.decision["batch_size"], a.decision["epochs"]) == (16, 60)
    gain = (0.84 - 0.59) / (1 - 0.59)
    assert a.signals["transfer_gain"] == pytest.approx(gain)
    assert a.signals["similarity"] == pytest.approx(min((0.5 - 0.36) / 0.35, gain))
    assert set(a.reasons) >= {"size", "similarity", "strategy", "freeze_stages", "backbone_lr_mult", "augment", "schedule"}
    assert a.candidates[0]["strategy"] == "partial" and a.candidates[0]["freeze_stages"] == 5
    assert {c["strategy"] for c in a.candidates} >= {"partial", "full"} and len(a.candidates) == 3


def test_decide_small_similar_data_is_a_linear_probe():
    m = measurements(per_class=30, kl=0.12, probe=[0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.92, 0.93, 0.95], random_probe=[0.3] * 9)
    a = decide(m, backbone="efficientnet_lite0", image_size=160)
    assert a.decision["strategy"] == "linear" and a.decision["augment"] == "none"
    assert a.decision["freeze_stages"] == 9
    assert a.decision["epochs"] == rules_epochs(300, "linear")
    assert [c["strategy"] for c in a.candidates] == ["linear", "partial", "full"]


def rules_epochs(total: int, strategy: str) -> int:
    from headstart.finetune import rules as fr

    num_train = round(total * (1 - fr.default_val_fraction(total // 10)))
    return fr.default_epochs(num_train=num_train, batch_size=fr.default_batch_size(num_train=num_train), strategy=strategy)


def test_decide_one_label_per_class_cannot_probe_and_keeps_the_body_frozen():
    m = measurements(per_class=1, kl=0.36, probe=[None] * 9, random_probe=[None] * 9)
    a = decide(m, backbone="efficientnet_lite0", image_size=112)
    assert a.decision["strategy"] == "linear"
    assert a.signals["transfer_gain"] is None and a.signals["bn_similarity"] == pytest.approx(0.4)


def test_decide_without_pretrained_weights_trains_everything():
    m = measurements(per_class=50, kl=None, probe=[0.4] * 9, random_probe=None, pretrained=False)
    a = decide(m, backbone="resnet18", image_size=160)
    assert a.decision["strategy"] == "full" and a.decision["backbone_lr_mult"] == 1.0
    assert a.candidates == [{"strategy": "full", "freeze_stages": 0, "backbone_lr_mult": 1.0, "augment": "light"}]


def test_candidates_are_distinct_and_start_with_the_choice():
    for choice in (
        {"strategy": "partial", "freeze_stages": 4, "backbone_lr_mult": 1.0, "augment": "light"},
        {"strategy": "partial", "freeze_stages": 6, "backbone_lr_mult": 1.0, "augment": "light"},
        {"strategy": "full", "freeze_stages": 0, "backbone_lr_mult": 1.0, "augment": "light"},
    ):
        cands = candidates({**choice, "augment_strength": 0.5}, n_stages=9, pretrained=True)
        assert cands[0] == choice
        assert len(cands) == 3 and len({tuple(sorted(c.items())) for c in cands}) == 3


def test_successive_halving_keeps_the_best_and_logs_every_trial():
    true_acc = {"a": 0.70, "b": 0.80, "c": 0.75}
    calls = []

    def score(cand, fraction):
        calls.append((cand["name"], fraction))
        return true_acc[cand["name"]] * (0.5 + fraction)  # longer training scores higher, same ranking

    winner, log = successive_halving([{"name": n} for n in "abc"], score)
    assert winner["name"] == "b"
    # round 1: all three at 25 %; round 2: the better two (ceil(3/2)) at 50 %
    assert calls == [("a", 0.25), ("b", 0.25), ("c", 0.25), ("b", 0.5), ("c", 0.5)]
    assert [row["round"] for row in log] == [0, 0, 0, 1, 1]
    assert math.isclose(log[1]["val_accuracy"], 0.8 * 0.75)


def test_successive_halving_ties_keep_the_rules_order_and_one_candidate_needs_no_trial():
    winner, _ = successive_halving([{"name": "rules"}, {"name": "other"}], lambda c, f: 0.5)
    assert winner["name"] == "rules"
    winner, log = successive_halving([{"name": "only"}], lambda c, f: 1 / 0)
    assert winner["name"] == "only" and log == []

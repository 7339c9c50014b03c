"""Pseudo-label arithmetic against hand computations: the FixMatch loss and mask on a tiny
batch, FlexMatch and FreeMatch thresholds, distribution alignment, the teacher's class-balanced
selection, and what is logged about the pool."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from headstart.methods import Batch, Setup, create_method
from headstart.methods._pseudo import Alignment, Thresholds, sharpen
from headstart.methods.pseudolabel import select


class _Fixed(nn.Module):
    """A 'network' whose logits are the input itself (the test chooses the predictions)."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(()))

    def forward(self, x):
        return x * self.w


def _log_softmax(row):
    m = max(row)
    z = math.log(sum(math.exp(v - m) for v in row)) + m
    return [v - z for v in row]


def test_fixmatch_loss_and_mask_by_hand():
    setup = Setup(num_classes=3, pool_size=4, pool_truth=torch.tensor([0, 1, 2, -1]))
    method = create_method("fixmatch", _Fixed(), {"threshold": "0.7"}, setup)
    x_l = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    y_l = torch.tensor([0, 2])
    weak = torch.tensor([[3.0, 0.0, 0.0], [0.0, 0.2, 0.0], [0.0, 0.0, 4.0], [0.0, 5.0, 0.0]])
    strong = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0], [2.0, 0.0, 1.0], [0.0, 3.0, 1.0]])
    out = method.step(Batch(images=x_l, labels=y_l, views={"unlabeled_weak": weak, "unlabeled_strong": strong},
                            extras={"unlabeled_index": torch.arange(4)}))
    sup = -(_log_softmax([2.0, 0.0, 0.0])[0] + _log_softmax([0.0, 1.0, 0.0])[2]) / 2
    # weak confidences: softmax(3,0,0)[0] = 0.909, (0,.2,0) max 0.378, (0,0,4) 0.965, (0,5,0) 0.987
    mask = [1.0, 0.0, 1.0, 1.0]
    pseudo = [0, 1, 2, 1]
    unsup = sum(-m * _log_softmax(s)[p] for m, s, p in zip(mask, strong.tolist(), pseudo)) / 4  # masked ones count in the mean
    assert out["sup_loss"].item() == pytest.approx(sup, rel=1e-5)
    assert out["unsup_loss"].item() == pytest.approx(unsup, rel=1e-5)
    assert out["loss"].item() == pytest.approx(sup + unsup, rel=1e-5)
    assert out["mask"].item() == pytest.approx(0.75)
    info = method.epoch_info()
    # kept with a hidden label: images 0 and 2 (image 3's is unknown), both right
    assert info["pool_mask"] == pytest.approx(0.75) and info["pool_pseudo_acc"] == pytest.approx(1.0)
    assert info["pool_thresholds"] == [0.7, 0.7, 0.7]


def test_the_hidden_labels_never_change_what_is_trained():
    def loss(truth):
        setup = Setup(num_classes=3, pool_size=4, pool_truth=truth)
        m = create_method("pseudolabel", _Fixed(), {"threshold": "0.5"}, setup)
        u = torch.tensor([[3.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 4.0], [1.0, 0.0, 0.0]])
        return m.step(Batch(images=u[:2], labels=torch.tensor([0, 1]), views={"unlabeled_weak": u},
                            extras={"unlabeled_index": torch.arange(4)}))["loss"].item()

    assert loss(torch.tensor([0, 1, 2, 0])) == loss(torch.tensor([2, 2, 2, 2])) == loss(None)


def test_flexmatch_thresholds_follow_the_claims_by_hand():
    t = Thresholds("flexmatch", 0.9, num_classes=3, pool_size=10)
    assert t.per_class().tolist() == [0.0, 0.0, 0.0]  # nothing claimed: β = 0 for every class
    probs = torch.tensor([[0.95, 0.03, 0.02], [0.96, 0.02, 0.02], [0.1, 0.85, 0.05], [0.02, 0.03, 0.95]])
    t.update(probs, torch.tensor([0, 1, 2, 3]))
    # claimed (confidence > τ): images 0,1 → class 0, image 3 → class 2; image 2 (0.85) claims nothing
    counts, unused = [2, 0, 1], 7
    denom = max(max(counts), unused)
    expected = [0.9 * (c / denom) / (2 - c / denom) for c in counts]
    assert t.per_class().tolist() == pytest.approx(expected)
    assert t.coverage() == pytest.approx(0.3)
    # a later confident prediction re-claims image 0 for class 1
    t.update(torch.tensor([[0.01, 0.98, 0.01]]), torch.tensor([0]))
    assert t.claimed.tolist()[:4] == [1, 0, -1, 2]
    mask = t.mask(torch.tensor([[0.5, 0.3, 0.2], [0.2, 0.1, 0.7]]))
    th = t.per_class()
    assert mask.tolist() == [float(0.5 >= th[0]), float(0.7 >= th[2])]


def test_freematch_thresholds_are_emas_by_hand():
    t = Thresholds("freematch", 0.95, num_classes=2, pool_size=4, momentum=0.9)
    probs = torch.tensor([[0.8, 0.2], [0.4, 0.6]])
    t.update(probs)
    g = 0.9 * 0.5 + 0.1 * (0.8 + 0.6) / 2
    p = [0.9 * 0.5 + 0.1 * 0.6, 0.9 * 0.5 + 0.1 * 0.4]
    assert float(t.global_conf) == pytest.approx(g)
    assert t.per_class().tolist() == pytest.approx([g * p[0] / max(p), g * p[1] / max(p)])


def test_distribution_alignment_by_hand():
    align = Alignment(torch.tensor([1.0, 1.0]), momentum=0.5)
    probs = torch.tensor([[0.9, 0.1], [0.7, 0.3]])
    out = align(probs)
    running = [0.5 * 0.5 + 0.5 * 0.8, 0.5 * 0.5 + 0.5 * 0.2]
    for row, o in zip(probs.tolist(), out.tolist()):
        raw = [row[0] * 0.5 / running[0], row[1] * 0.5 / running[1]]
        assert o == pytest.approx([v / sum(raw) for v in raw])


def test_sharpen_by_hand():
    out = sharpen(torch.tensor([[0.6, 0.4]]), 0.5)
    assert out.tolist()[0] == pytest.approx([0.36 / 0.52, 0.16 / 0.52])


def test_teacher_selection_threshold_keep_and_class_balance_by_hand():
    table = torch.tensor([
        [0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.6, 0.4],  # class 0, confidences .9 .8 .7 .6
        [0.35, 0.65], [0.45, 0.55],  # class 1, .65 .55
    ])
    assert select(table, 0.0, 1.0, False).tolist() == [True] * 6
    assert select(table, 0.62, 1.0, False).tolist() == [True, True, True, False, True, False]
    assert select(table, 0.0, 0.5, False).tolist() == [True, True, True, False, False, False]  # the 3 most confident
    # balanced, keep 1: quota 6/2 = 3 per class; class 1 has only 2
    assert select(table, 0.0, 1.0, True).tolist() == [True, True, True, False, True, True]
    # balanced, keep 1/3: quota 1 per class, each class's most confident
    assert select(table, 0.0, 1 / 3, True).tolist() == [True, False, False, False, True, False]


def test_a_teacher_table_gives_the_student_its_soft_targets_on_the_kept_images():
    table = torch.tensor([[0.9, 0.1], [0.5, 0.5], [0.2, 0.8]])
    setup = Setup(num_classes=2, pool_size=3, pool_targets=table)
    method = create_method("pseudolabel", _Fixed(), {"threshold": "0.6", "targets": "soft", "view": "strong"}, setup)
    u = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0]])
    out = method.step(Batch(images=u[:1], labels=torch.tensor([0]), views={"unlabeled_strong": u}, extras={"unlabeled_index": torch.arange(3)}))
    expected = 0.0
    for row, target, kept in zip(u.tolist(), table.tolist(), [1, 0, 1]):
        ls = _log_softmax(row)
        expected += -kept * (target[0] * ls[0] + target[1] * ls[1])
    assert out["unsup_loss"].item() == pytest.approx(expected / 3, rel=1e-5)
    assert method.epoch_info()["pool_coverage"] == pytest.approx(2 / 3)


def test_a_confidence_equal_to_the_threshold_is_kept():
    t = Thresholds("fixed", 0.6, num_classes=2, pool_size=1)
    assert t.mask(torch.tensor([[0.6, 0.4], [0.4, 0.6], [0.59, 0.41]])).tolist() == [1.0, 1.0, 0.0]

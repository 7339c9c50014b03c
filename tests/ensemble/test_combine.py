"""The fitted rules, the torch ensemble module and the rule choice against naive references."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from headstart.backbones import Preprocess
from headstart.ensemble import RULES, Rule, accuracy_weights, choose_rule, compare_rules, fit_stack, stack
from headstart.ensemble.model import EnsembleModel, MemberInput
from headstart.ensemble.select import folds_for, out_of_fold


def _random_probs(m, n, c, seed):
    rng = np.random.default_rng(seed)
    x = np.exp(rng.normal(size=(m, n, c)) * 2)
    return x / x.sum(2, keepdims=True)


def test_accuracy_weights_are_each_members_accuracy_normalised():
    probs = _random_probs(4, 50, 3, 0)
    labels = np.random.default_rng(1).integers(0, 3, 50)
    acc = [sum(int(np.argmax(probs[k, i]) == labels[i]) for i in range(50)) / 50 for k in range(4)]
    np.testing.assert_allclose(accuracy_weights(probs, labels), np.array(acc) / sum(acc))
    never = np.stack([np.eye(3)[(labels + 1) % 3]] * 2)
    np.testing.assert_allclose(accuracy_weights(never, labels), [0.5, 0.5])


@pytest.mark.parametrize("m,n,c,seed", [(2, 60, 3, 0), (3, 90, 4, 1), (2, 40, 2, 2)])
def test_the_stacking_layer_is_scikit_learns_logistic_regression_on_log_probabilities(m, n, c, seed):
    from sklearn.linear_model import LogisticRegression

    probs = _random_probs(m, n, c, seed)
    labels = np.random.default_rng(seed + 5).integers(0, c, n)
    labels[:c] = np.arange(c)  # every class present
    feats = np.array([[np.log(max(probs[k, i, j], 1e-7)) for k in range(m) for j in range(c)] for i in range(n)])
    ref = LogisticRegression(C=1.0, max_iter=2000).fit(feats, labels)
    params = fit_stack(probs, labels)
    np.testing.assert_allclose(stack(probs, params), ref.predict_proba(feats), atol=1e-6)
    new = _random_probs(m, 7, c, seed + 9)
    new_feats = np.array([[np.log(max(new[k, i, j], 1e-7)) for k in range(m) for j in range(c)] for i in range(7)])
    np.testing.assert_allclose(stack(new, params), ref.predict_proba(new_feats), atol=1e-6)


def test_a_class_the_held_out_images_lack_is_never_predicted_by_the_stack():
    probs = _random_probs(2, 30, 4, 3)
    labels = np.arange(30) % 3  # class 3 absent
    out = stack(probs, fit_stack(probs, labels))
    assert out.shape == (30, 4) and out[:, 3].max() < 1e-9
    np.testing.assert_allclose(out.sum(1), 1.0)
    one = stack(probs, fit_stack(probs, np.zeros(30, dtype=int)))
    assert (one.argmax(1) == 0).all()


class _MemberOf(torch.nn.Module):
    """A fake member: the 'images' handed in are the stacked probability table, member k reads its row."""

    def __init__(self, k):
        super().__init__()
        self.k = k

    def forward(self, x):
        return x[self.k].log()


@pytest.mark.parametrize("rule", ["soft", "hard", "weighted", "accuracy", "stack"])
def test_the_torch_ensemble_combines_exactly_as_the_numpy_rules(rule):
    m, n, c = 3, 25, 4
    probs = _random_probs(m, n, c, 7)
    for i in range(5):  # three members, three different votes: a tie the soft vote must break
        for k in range(m):
            probs[k, i] = np.full(c, 0.1)
            probs[k, i, (i + k) % c] = 0.4 + 0.1 * ((i * 7 + k) % 3)
        probs[:, i] /= probs[:, i].sum(1, keepdims=True)
    labels = np.random.default_rng(8).integers(0, c, n)
    labels[:c] = np.arange(c)
    params = RULES.get(rule).fit(probs, labels)
    expected = RULES.get(rule).combine(probs, params)
    model = EnsembleModel([_MemberOf(k) for k in range(m)], [torch.nn.Identity() for _ in range(m)], rule, params)
    p = torch.from_numpy(probs).float()
    np.testing.assert_allclose(model.combine(p).numpy(), expected, atol=2e-5)
    assert (model.combine(p).numpy().argmax(1) == expected.argmax(1)).all()  # the tie-breaks too, not only 1e-6 close
    # forward: log-probabilities, so a softmax gives the combined probabilities back
    out = model(p).softmax(1)
    np.testing.assert_allclose(out.numpy(), expected, atol=2e-5)


def test_member_input_prepares_pixels_as_the_engine_does():
    from headstart.engine import Prepare

    pre = Preprocess(mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3), image_size=224)
    x = torch.randint(0, 256, (2, 3, 28, 28), dtype=torch.uint8)
    for size in (28, 40, 16):
        torch.testing.assert_close(MemberInput(pre, size)(x), Prepare(pre, size, torch.device("cpu"))(x))
        manual = (x.float() / 255 - torch.tensor(pre.mean).view(1, 3, 1, 1)) / torch.tensor(pre.std).view(1, 3, 1, 1)
        if size == 28:
            torch.testing.assert_close(MemberInput(pre, size)(x), manual, atol=1e-5, rtol=1e-5)


def test_out_of_fold_never_scores_an_image_with_a_rule_fitted_on_it(monkeypatch):
    n, c = 30, 3
    labels = np.arange(n) % c
    probs = np.full((2, n, c), 1.0 / c)
    probs[0, :, 0] = np.arange(n) / 1000.0 + 0.01  # each image identifiable by its first value
    seen: list[tuple[set, set]] = []
    fitted: dict = {}

    def fit(p, y):
        fitted["ids"] = set(np.round((p[0, :, 0] - 0.01) * 1000).astype(int).tolist())
        return {}

    def combine(p, q):
        ids = set(np.round((p[0, :, 0] - 0.01) * 1000).astype(int).tolist())
        seen.append((fitted["ids"], ids))
        return np.full(p.shape[1:], 1.0 / c)

    monkeypatch.setitem(RULES._entries, "spy", Rule(fit, combine, True, "records what it is fitted on"))
    out_of_fold("spy", probs, labels, folds=folds_for(labels))
    assert len(seen) == 5
    assert all(not (fit_ids & score_ids) for fit_ids, score_ids in seen)
    assert set().union(*(s for _, s in seen)) == set(range(n))


def test_folds_follow_the_smallest_class():
    assert folds_for(np.array([0] * 10 + [1] * 10)) == 5
    assert folds_for(np.array([0] * 3 + [1] * 10)) == 3
    assert folds_for(np.array([0] * 1 + [1] * 10)) == 0


def _rows(base_right, other_right, other_acc=None):
    soft = {"available": True, "accuracy": float(np.mean(base_right)), "nll": 1.0, "right": np.asarray(base_right)}
    other = {"available": True, "out_of_fold": True, "accuracy": other_acc or float(np.mean(other_right)), "nll": 0.9,
             "right": np.asarray(other_right)}
    return {"soft": soft, "hard": {**soft, "nll": 5.0}, "stack": other}


def test_the_soft_vote_is_kept_unless_another_rule_beats_it_beyond_noise():
    base = np.array([True] * 70 + [False] * 30)
    slightly = base.copy()
    slightly[70:73] = True  # 3 more right: z = 1.7, noise
    name, why = choose_rule(_rows(base, slightly))
    assert name == "soft" and "noise" in why
    clearly = base.copy()
    clearly[70:80] = True  # 10 more right, none lost: z = 3.2
    name, why = choose_rule(_rows(base, clearly))
    assert name == "stack" and "z = 3.2" in why and "out of fold" in why
    worse = base.copy()
    worse[:10] = False  # 10 fewer right: beyond noise, the wrong way
    assert choose_rule(_rows(base, worse))[0] == "soft"


def test_compare_rules_scores_unfitted_rules_on_all_images_and_marks_unfittable_ones():
    probs = _random_probs(3, 40, 3, 11)
    labels = np.arange(40) % 3
    rows = compare_rules(probs, labels)
    soft = RULES.get("soft").combine(probs, RULES.get("soft").fit(probs, labels))
    assert rows["soft"]["accuracy"] == pytest.approx(float((soft.argmax(1) == labels).mean()))
    assert rows["stack"]["out_of_fold"] and rows["stack"]["folds"] == 5
    tiny = compare_rules(probs[:, :4], np.array([0, 1, 2, 2]))
    assert not tiny["weighted"]["available"] and tiny["soft"]["available"]

"""Contract tests over every registered method (``METHODS``): what the loop relies on.

Each method is built on a tiny fake model and data set; a new method file is picked up here
by itself. A method that needs unlabeled views gets them from ``WithUnlabeled``.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from headstart.engine import Batches, Context, WithUnlabeled, fit
from headstart.methods import METHODS, Batch, Setup, TrainingMethod, build_options, create_method, option_help

CPU = torch.device("cpu")
_G = torch.Generator().manual_seed(0)
X = torch.randn(32, 6, generator=_G)
Y = torch.randint(0, 3, (32,), generator=_G)
U = torch.randn(40, 6, generator=_G)


def _method(case) -> TrainingMethod:
    name, options = case
    torch.manual_seed(0)
    options = dict(options or {})
    table = options.pop("_teacher", None)
    setup = Setup(
        num_classes=3, label_smoothing=0.1, pool_size=len(U), pool_targets=table, labeled_targets=_LABELED_TABLE,
        pool_truth=torch.arange(len(U)) % 3, class_prior=torch.tensor([0.5, 0.25, 0.25]), teacher=_TEACHER,
    )
    return create_method(name, nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3)), options or None, setup)


def _needs(method: TrainingMethod):
    return type(method).needs_for(method.options)


def _batch(method: TrainingMethod, n: int = 8) -> Batch:
    needs = _needs(method)
    m = n * max(1, needs.unlabeled_ratio)
    views = {f"unlabeled_{v}": U[:m] for v in needs.unlabeled_views}
    extras = {"unlabeled_index": torch.arange(m), "labeled_index": torch.arange(n)} if views else {}
    return Batch(images=X[:n], labels=Y[:n] if needs.labels else None, views=views, extras=extras)


def _source(method: TrainingMethod):
    labeled = Batches(X, Y, batch_size=8, shuffle=True, seed=1)
    needs = _needs(method)
    if not needs.unlabeled_views:
        return labeled
    return WithUnlabeled(labeled, U, ratio=max(1, needs.unlabeled_ratio), views={v: None for v in needs.unlabeled_views})


NAMES = METHODS.names()
# every method with its defaults, and options that switch on state of its own
_TABLE = torch.softmax(torch.randn(len(U), 3, generator=_G) * 3, 1)
_LABELED_TABLE = torch.softmax(torch.randn(len(X), 3, generator=_G) * 3, 1)
_TEACHER = nn.Linear(6, 3)  # a fixed network for the methods that learn from one (distill); the others ignore it
CASES = [(n, None) for n in NAMES] + [
    ("supervised", {"ema_decay": "0.9"}),
    ("pseudolabel", {"thresholds": "flexmatch", "threshold": "0.3"}),
    ("pseudolabel", {"thresholds": "freematch", "targets": "soft", "temperature": "0.5", "align": "true", "ema_decay": "0.9"}),
    ("pseudolabel", {"_teacher": _TABLE, "view": "strong", "targets": "soft", "threshold": "0.5", "balance": "true"}),
    ("fixmatch", {"thresholds": "flexmatch", "threshold": "0.3", "align": "true"}),
    ("fixmatch", {"thresholds": "freematch", "ema_decay": "0.9"}),
    ("distill", {"ratio": "3", "view": "strong"}),
    ("distill", {"_teacher": _TABLE, "ratio": "2", "cached_teacher": "true"}),
]
IDS = [n if o is None else f"{n}-{','.join(f'{k}={v}' for k, v in o.items() if k != '_teacher')}" + ("-teacher" if o and "_teacher" in o else "")
       for n, o in CASES]


def test_the_registry_holds_the_supervised_method():
    assert "supervised" in NAMES


@pytest.mark.parametrize("name", CASES, ids=IDS)
def test_step_gives_a_finite_scalar_loss_with_a_gradient_for_every_trainable_parameter(name):
    method = _method(name)
    out = method.step(_batch(method))
    loss = out["loss"]
    assert loss.ndim == 0 and torch.isfinite(loss) and loss.requires_grad
    assert all(torch.is_tensor(v) and v.ndim == 0 and torch.isfinite(v) for v in out.values())
    loss.backward()
    trainable = [p for p in method.trainable().parameters() if p.requires_grad]
    assert trainable and all(p.grad is not None and torch.isfinite(p.grad).all() for p in trainable)


@pytest.mark.parametrize("name", CASES, ids=IDS)
def test_every_trainable_parameter_is_in_exactly_one_optimizer_group(name):
    from headstart.finetune.recipe import make_optimizer

    method = _method(name)
    groups = [{"params": [p for p in method.trainable().parameters() if p.requires_grad], "lr": 1e-3}]
    groups += method.param_groups(1e-3, 0.0)
    opt = make_optimizer(groups)
    ids = [id(p) for g in opt.param_groups for p in g["params"]]
    assert len(ids) == len(set(ids))  # no parameter twice
    owned = {id(p) for p in method.trainable().parameters() if p.requires_grad}
    assert owned <= set(ids)  # and none left out


@pytest.mark.parametrize("name", CASES, ids=IDS)
def test_evaluation_sums_add_up_over_any_split_of_the_data(name):
    method = _method(name)
    module = method.eval_module().eval()
    with torch.no_grad():
        whole = method.eval_step(Batch(images=X, labels=Y))
        parts = [method.eval_step(Batch(images=X[i : i + 5], labels=Y[i : i + 5])) for i in range(0, 32, 5)]
    for key, value in whole.items():
        torch.testing.assert_close(sum(p[key].double() for p in parts), value.double(), atol=1e-4, rtol=1e-5)
    scores = method.score({k: float(v) for k, v in whole.items()})
    first = next(iter(scores))
    assert first.startswith("val_") and np.isfinite(scores[first])
    if "correct" in whole:  # the default score: accuracy over the whole set, against a recount
        with torch.no_grad():
            assert scores["val_acc"] == pytest.approx((module(X).argmax(1) == Y).float().mean().item())


@pytest.mark.parametrize("name", CASES, ids=IDS)
def test_method_state_survives_a_round_trip(name):
    method = _method(name)
    with torch.no_grad():
        for p in method.trainable().parameters():
            p.add_(1.0)  # an optimizer step's worth of change, so any EMA moves
    method.step(_batch(method))  # statistics a method keeps from its batches (thresholds) move too
    method.after_step(1)
    method.after_step(2)
    state = method.state_dict()
    other = _method(name)
    other.load_state_dict(state)
    leaves, spec = torch.utils._pytree.tree_flatten(state)
    back, back_spec = torch.utils._pytree.tree_flatten(other.state_dict())
    assert spec == back_spec
    assert all(torch.equal(a, b) if torch.is_tensor(a) else a == b for a, b in zip(leaves, back))
    if leaves:  # the state is the method's own, not a copy of the fresh one
        fresh = torch.utils._pytree.tree_flatten(_method(name).state_dict())[0]
        assert any(not torch.equal(a, b) for a, b in zip(leaves, fresh) if torch.is_tensor(a))


@pytest.mark.parametrize("name", CASES, ids=IDS)
def test_one_epoch_through_the_real_loop(name):
    method = _method(name)
    opt = torch.optim.AdamW([p for p in method.trainable().parameters() if p.requires_grad] or [torch.zeros(1, requires_grad=True)])
    before = [p.detach().clone() for p in method.trainable().parameters()]
    result = fit(
        method, _source(method), Batches(X, Y, batch_size=16), epochs=1, optimizer=opt, lr_multipliers=np.ones(4),
        context=Context(device=CPU, prepare=lambda t: t, show_progress=False),
    )
    row = result.history[0]
    assert np.isfinite(row["train_loss"]) and "val_acc" in row
    assert any(not torch.equal(a, b) for a, b in zip(before, method.trainable().parameters()))


@pytest.mark.parametrize("name", NAMES)
def test_options_are_a_frozen_dataclass_with_help_and_parse_from_strings(name):
    cls = METHODS.get(name)
    assert dataclasses.is_dataclass(cls.Options) and cls.Options.__dataclass_params__.frozen
    assert (cls.__doc__ or "").strip(), f"{name} needs a docstring: its first line is its help"
    rows = option_help(cls.Options)
    for field_name, default, help_text in rows:
        assert help_text, f"{name}.{field_name} has no help"
        assert build_options(cls, name, {field_name: str(default)}) == cls.Options()  # the default, as the CLI would give it


def test_unknown_or_malformed_options_are_clear_errors():
    from headstart.errors import ConfigError

    with pytest.raises(ConfigError, match="has no option nope.*headstart list methods"):
        build_options(METHODS.get("supervised"), "supervised", {"nope": "1"})

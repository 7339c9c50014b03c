"""A safety net that can fail: each test guards one line that an earlier test let break unseen.

- ``fit`` hands back the best validation epoch's weights (on a run whose validation accuracy
  peaks and then clearly falls, so the last epoch is not the best);
- the feature-cache key covers the body and ignores the head;
- the kNN head's probabilities equal a hand-written vote with its 0.001 tie-breaker;
- a non-finite loss stops training with the last good checkpoint kept, and that checkpoint
  resumes to the uninterrupted run's end;
- a run interrupted inside or after ``--warmup-epochs``, and a linear probe on cached features,
  resume to the uninterrupted run bit for bit.

Crashes are simulated in process (an exception from a training step, which leaves exactly what
a kill -9 leaves: the last checkpoint and nothing after it); every resume counts the training
steps it takes, so a run that silently starts over cannot pass for a resumed one.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from headstart import TrainConfig, train
from headstart.backbones import Preprocess, create_backbone
from headstart.engine import Batches, Context, fit
from headstart.engine.cache import FeatureCache, data_fingerprint
from headstart.engine.checkpoint import Checkpointer
from headstart.errors import TrainingDiverged
from headstart.finetune.knn import KNNHead
from headstart.methods import Batch, Setup, Supervised

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread while these tests run: on a busy two-core machine, two OpenMP
    threads spin against other processes and a one-second training run takes ten. Every
    comparison below is made within one test, so at one thread count."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


class _Crash(Exception):
    """Stands for a kill: raised from inside a training step, caught by nothing in headstart."""


def _same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k, v in a.items():
        assert torch.equal(v, b[k]), k


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def _counting_supervised(monkeypatch, *, crash_at: int | None = None) -> dict[str, int]:
    """Make every training step of ``api.train`` go through a counter (and raise ``_Crash`` at
    step ``crash_at``, counted over the whole call); returns the counter.

    ``api`` builds its method from the ``METHODS`` registry (``--method supervised`` by
    default), so the counter goes on ``Supervised.step`` itself: every instance, however built."""
    calls = {"n": 0}
    original = Supervised.step

    def counting_step(self, batch: Batch):
        calls["n"] += 1
        if calls["n"] == crash_at:
            raise _Crash(f"simulated kill at step {crash_at}")
        return original(self, batch)

    monkeypatch.setattr(Supervised, "step", counting_step)
    return calls


def _run_outcome(run: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """A finished run's weights and the metrics that must not depend on interruptions."""
    metrics = json.loads((run / "metrics.json").read_text())
    return load_file(str(run / "model.safetensors")), {k: metrics[k] for k in ("history", "best_epoch", "val", "interrupted")}


# -- 1. fit keeps the best validation epoch ------------------------------------------------

# Training labels follow x0; the model starts out deciding by x1; validation labels follow
# x0 + x1. Gradient descent turns the boundary from x1 towards x0, through the diagonal, so
# validation accuracy rises to 1.0 (epoch 4) and then falls back towards 0.75.
_G = torch.Generator().manual_seed(0)
_X = torch.randn(600, 2, generator=_G)
_X_TRAIN, _Y_TRAIN = _X[:200], (_X[:200, 0] > 0).long()
_X_VAL, _Y_VAL = _X[200:], (_X[200:, 0] + _X[200:, 1] > 0).long()


def _rotating_boundary_fit(epochs: int, *, validate: bool):
    model = nn.Linear(2, 2)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[0.0, -1.0], [0.0, 1.0]]))
        model.bias.zero_()
    result = fit(
        Supervised(model, setup=Setup(num_classes=2, label_smoothing=0.0)),
        Batches(_X_TRAIN, _Y_TRAIN, batch_size=20, shuffle=True, seed=1),
        Batches(_X_VAL, _Y_VAL, batch_size=100) if validate else None, epochs=epochs,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.05), lr_multipliers=np.ones(1),  # constant rate
        context=Context(device=CPU, prepare=lambda t: t, show_progress=False),
    )
    return model, result


def test_fit_restores_the_best_epoch_when_validation_accuracy_falls_later():
    model, res = _rotating_boundary_fit(8, validate=True)
    accs = [row["val_acc"] for row in res.history]
    best = res.best_epoch
    assert len(accs) == 8 and 1 <= best < 8, accs
    assert accs[best - 1] == max(accs) and accs[-1] < max(accs) - 0.05, accs  # a real peak, then a clear decline
    assert _accuracy(model, _X_VAL, _Y_VAL) == accs[best - 1]  # the final model scores the best epoch's score
    # and it is that epoch's model: training from the same start for exactly `best` epochs
    # (no validation, so nothing is restored there) gives the same weights bit for bit
    reference, _ = _rotating_boundary_fit(best, validate=False)
    _same_weights(model.state_dict(), reference.state_dict())


# -- 2. the feature-cache key ----------------------------------------------------------------


def test_feature_cache_key_covers_the_body_and_ignores_the_head(tmp_path):
    cache = FeatureCache(tmp_path)
    model = create_backbone("resnet18", num_classes=2, weights=None)
    data_id = data_fingerprint(np.zeros((4, 8, 8), dtype=np.uint8), np.array([0, 1, 0, 1]))

    def key() -> str:
        return cache.key(model=model, image_size=64, data_id=data_id)

    base = key()
    model.reset_head(5)  # another number of classes: same features
    assert key() == base
    with torch.no_grad():
        model.head.weight.add_(1.0)  # a trained head: same features
        model.head.bias.fill_(3.0)
    assert key() == base
    model.freeze(2)  # which stages train does not change what the body computes now
    assert key() == base
    saved = model.preprocess
    model.preprocess = Preprocess(mean=(0.5, 0.5, 0.5), std=saved.std, image_size=saved.image_size)
    assert key() != base  # other normalisation, other features
    model.preprocess = saved
    assert key() == base
    with torch.no_grad():
        model.stages[-1][-1].bn2.running_var[0] += 1e-3  # a BatchNorm statistic of the last stage
    changed = key()
    assert changed != base
    with torch.no_grad():
        model.stages[-1][-1].conv2.weight[0, 0, 0, 0] += 1e-3  # one weight of the last stage
    assert key() not in (base, changed)


# -- 3. kNN head probabilities ---------------------------------------------------------------

TIE_BREAK = 1e-3  # each neighbour votes 1 + TIE_BREAK x its cosine similarity (KNNHead's docstring)


def _naive_vote_shares(bank: np.ndarray, labels: np.ndarray, queries: np.ndarray, k: int, num_classes: int) -> np.ndarray:
    """Cosine similarity in float64, the k most similar bank rows, one vote of
    1 + TIE_BREAK x similarity each, normalised to shares: written out loop by loop."""
    out = np.zeros((len(queries), num_classes))
    for qi, q in enumerate(queries.astype(np.float64)):
        sims = [float(q @ b) / (np.linalg.norm(q) * np.linalg.norm(b)) for b in bank.astype(np.float64)]
        nearest = sorted(range(len(bank)), key=lambda i: -sims[i])[: min(k, len(bank))]
        for i in nearest:
            out[qi, int(labels[i])] += 1.0 + TIE_BREAK * sims[i]
        out[qi] /= out[qi].sum()
    return out


def _at(degrees: float) -> list[float]:
    return [math.cos(math.radians(degrees)), math.sin(math.radians(degrees))]


def _knn_check(bank: np.ndarray, labels: np.ndarray, queries: np.ndarray, k: int, num_classes: int) -> torch.Tensor:
    head = KNNHead(torch.from_numpy(bank), torch.from_numpy(labels), num_classes, k)
    shares = head.votes(torch.from_numpy(queries))
    ref = torch.from_numpy(_naive_vote_shares(bank, labels, queries, k, num_classes)).float()
    torch.testing.assert_close(shares, ref, rtol=0, atol=2e-7)
    logits = head(torch.from_numpy(queries))
    torch.testing.assert_close(logits, ref.clamp_min(1e-6).log(), rtol=0, atol=1e-5)
    torch.testing.assert_close(logits.softmax(1), ref, rtol=0, atol=1e-5)  # softmax gives the shares back
    return shares


@pytest.mark.parametrize("k", [1, 2, 3, 4, 7, 50])  # 50 > the bank: every row votes
@pytest.mark.parametrize("num_classes", [2, 3, 5])
def test_knn_vote_shares_match_a_naive_vote(k, num_classes):
    rng = np.random.default_rng(100 * k + num_classes)
    bank = rng.normal(size=(12, 6)).astype(np.float32) * rng.uniform(0.1, 10, size=(12, 1)).astype(np.float32)
    labels = np.arange(12) % num_classes  # every class present; even k ties often
    queries = rng.normal(size=(9, 6)).astype(np.float32)
    _knn_check(bank, labels, queries, k, num_classes)


def test_knn_vote_ties_go_to_the_closer_class_by_the_tie_break():
    # the query lies at 0 degrees; neighbours at 10 (class 0), 20 (1), 30 (1), 40 (0) and 170 (2)
    bank = np.array([_at(10), _at(20), _at(30), _at(40), _at(170)], dtype=np.float32)
    labels = np.array([0, 1, 1, 0, 2])
    query = np.array([_at(0), [2.0, 0.0]], dtype=np.float32)  # the length plays no part
    s = [math.cos(math.radians(d)) for d in (10, 20, 30, 40, 170)]
    # k = 2: one vote each, class 0's neighbour is closer
    shares = _knn_check(bank, labels, query, 2, 3)
    assert shares.argmax(1).tolist() == [0, 0]
    torch.testing.assert_close(shares[0, 0], torch.tensor((1 + TIE_BREAK * s[0]) / (2 + TIE_BREAK * (s[0] + s[1]))))
    # k = 4: two votes each; class 1's pair (20, 30) is closer in sum than class 0's (10, 40)
    shares = _knn_check(bank, labels, query, 4, 3)
    assert shares.argmax(1).tolist() == [1, 1] and shares[0, 2] == 0
    # k = 5: class 2 joins with one vote of 1 + TIE_BREAK x cos(170) < 1
    shares = _knn_check(bank, labels, query, 5, 3)
    assert shares.argmax(1).tolist() == [1, 1] and 0 < shares[0, 2] < 1 / 5
    # a three-way tie among 3 classes goes to the nearest one
    bank3 = np.array([_at(50), _at(5), _at(-30)], dtype=np.float32)
    assert _knn_check(bank3, np.array([0, 1, 2]), query, 3, 3).argmax(1).tolist() == [1, 1]


# -- 4. a diverging run keeps its last good checkpoint ------------------------------------------

_XD = torch.randn(40, 4, generator=torch.Generator().manual_seed(3))
_YD = torch.randint(0, 3, (40,), generator=torch.Generator().manual_seed(4))
DIVERGE_AT = 14  # a step at which a checkpoint is due (every 2 steps): the bad state must not be saved


class _DivergesAt(Supervised):
    """Supervised, but from step ``at`` on the inputs are scaled to infinity (a corrupt batch
    or an exploding layer): the loss becomes NaN. ``crash_at`` raises ``_Crash`` instead."""

    def __init__(self, model: nn.Module, at: int | None, crash_at: int | None = None) -> None:
        super().__init__(model, setup=Setup(num_classes=3, label_smoothing=0.0))
        self.at, self.crash_at, self.calls = at, crash_at, 0

    def step(self, batch: Batch):
        self.calls += 1
        if self.calls == self.crash_at:
            raise _Crash()
        if self.at is not None and self.calls >= self.at:
            batch = Batch(images=batch.images * float("inf"), labels=batch.labels)
        return super().step(batch)


def _diverging_fit(folder: Path, *, diverge_at: int | None, crash_at: int | None = None, resume=None, init_seed: int = 0):
    torch.manual_seed(init_seed)
    model = nn.Linear(4, 3)
    method = _DivergesAt(model, diverge_at, crash_at)
    result = fit(
        method, Batches(_XD, _YD, batch_size=8, shuffle=True, seed=2),  # 5 steps an epoch
        Batches(_XD[:16], _YD[:16], batch_size=16), epochs=4,
        optimizer=torch.optim.AdamW(model.parameters(), lr=0.05), lr_multipliers=np.linspace(1, 0.1, 20),
        context=Context(
            device=CPU, prepare=lambda t: t, show_progress=False,
            checkpoint=Checkpointer(folder, every_steps=2, min_interval_s=0), resume=resume,
        ),
    )
    return model, result, method


def test_divergence_keeps_the_last_good_checkpoint_and_it_resumes_to_the_end(tmp_path):
    ref_model, ref, _ = _diverging_fit(tmp_path / "ref", diverge_at=None)
    with pytest.raises(TrainingDiverged) as info:
        _diverging_fit(tmp_path / "bad", diverge_at=DIVERGE_AT)
    text = str(info.value)
    assert "nan" in text and "epoch 3" in text and "lower --lr (now 0.05)" in text
    assert f"the last good checkpoint is kept in {tmp_path / 'bad' / 'last.pt'}" in text

    state = Checkpointer(tmp_path / "bad").load()
    assert state is not None
    assert state["step"] == DIVERGE_AT - 2 < DIVERGE_AT  # the save before the bad step, not at it
    assert (state["epoch"], state["position"]) == (2, 2)
    assert all(torch.isfinite(v).all() for v in state["model"].values())
    # one process's running sums, name -> float64 scalar: the loss and accuracy so far, all finite
    assert [sorted(s) for s in state["sums"]] == [["acc", "loss"]]
    assert all(torch.isfinite(v).all() for s in state["sums"] for v in s.values())
    assert all(torch.isfinite(t).all() for g in state["optimizer"]["state"].values() for t in g.values())
    # the kept state is the clean run's after the same steps (stopped there by a kill instead)
    with pytest.raises(_Crash):
        _diverging_fit(tmp_path / "clean", diverge_at=None, crash_at=DIVERGE_AT - 1)
    clean = Checkpointer(tmp_path / "clean").load()
    assert clean["step"] == state["step"]
    _same_weights(state["model"], clean["model"])
    _same_weights(state["best_state"], clean["best_state"])
    assert state["history"] == clean["history"]

    # resumed without the corruption, it trains to the end, equal to a run that never diverged
    model, res, method = _diverging_fit(tmp_path / "bad", diverge_at=None, resume=state, init_seed=9)
    assert method.calls == 20 - state["step"]
    assert len(res.history) == 4 and res.history == ref.history and res.best_epoch == ref.best_epoch
    _same_weights(model.state_dict(), ref_model.state_dict())


# -- 5. exact resume: across the warm-up and of a linear probe --------------------------------


def _train_config(data: Path, out: Path, **changes) -> TrainConfig:
    settings = {
        "data": str(data), "output": str(out), "image_size": 32, "batch_size": 8, "val_fraction": 0.3, "device": "cpu",
        "progress": False, "checkpoint_every": 2, "num_workers": 0,
    }
    return TrainConfig(**{**settings, **changes})


def test_resume_inside_and_after_the_warmup_matches_an_uninterrupted_run(shapes_folder, tmp_path, monkeypatch):
    # 21 training images, batch 8: 3 steps an epoch; 2 warm-up epochs (head only) then 2 with the
    # last 3 stages unfrozen; checkpoints every 2 steps of each phase
    cfg = {"strategy": "partial", "freeze_stages": 6, "warmup_epochs": 2, "epochs": 2}
    calls = _counting_supervised(monkeypatch)
    ref = train(_train_config(shapes_folder, tmp_path / "ref", **cfg))
    assert calls["n"] == 12 and [r["phase"] for r in ref.history] == ["warmup"] * 2 + ["train"] * 2

    run = tmp_path / "run"
    ckpt = Checkpointer(run / "checkpoint")
    _counting_supervised(monkeypatch, crash_at=5)  # warm-up epoch 2
    with pytest.raises(_Crash):
        train(_train_config(shapes_folder, run, **cfg))
    state = ckpt.load()
    assert (state["tag"], state["step"], state["epoch"], state["position"]) == ("warmup", 4, 1, 1)
    assert not (run / "model.json").exists()

    # resumed: the 2 warm-up steps left, then the main phase, killed in its epoch 2
    _counting_supervised(monkeypatch, crash_at=2 + 5)
    with pytest.raises(_Crash):
        train(_train_config(shapes_folder, run, resume=True, **cfg))
    state = ckpt.load()
    assert (state["tag"], state["step"], state["epoch"], state["position"]) == ("train", 4, 1, 1)
    assert [r["phase"] for r in state["info"]["prior_history"]] == ["warmup"] * 2

    # resumed again: only the main phase's last 2 steps run; the warm-up is not repeated
    calls = _counting_supervised(monkeypatch)
    res = train(_train_config(shapes_folder, run, resume=True, **cfg))
    assert calls["n"] == 2
    assert res.history == ref.history and res.best_epoch == ref.best_epoch
    (wa, ma), (wb, mb) = _run_outcome(tmp_path / "ref"), _run_outcome(run)
    _same_weights(wa, wb)
    assert ma == mb
    assert not (run / "checkpoint").exists()  # finished: no checkpoint left to resume into


def test_resume_of_a_linear_probe_on_cached_features_matches_an_uninterrupted_run(shapes_folder, tmp_path, monkeypatch):
    # 21 training features, batch 4: 6 steps an epoch (the last of 1), 3 epochs; the head's
    # dropout draws from the global generator, which the checkpoint must carry
    cfg = {"strategy": "linear", "batch_size": 4, "epochs": 3, "drop_rate": 0.3}
    calls = _counting_supervised(monkeypatch)
    ref = train(_train_config(shapes_folder, tmp_path / "ref", **cfg))
    assert calls["n"] == 18 and len(ref.history) == 3

    run = tmp_path / "run"
    _counting_supervised(monkeypatch, crash_at=9)  # epoch 2, after its checkpoint at step 8
    with pytest.raises(_Crash):
        train(_train_config(shapes_folder, run, **cfg))
    state = Checkpointer(run / "checkpoint").load()
    assert (state["tag"], state["step"], state["epoch"], state["position"]) == ("linear", 8, 1, 2)

    calls = _counting_supervised(monkeypatch)
    res = train(_train_config(shapes_folder, run, resume=True, **cfg))
    assert calls["n"] == 18 - 8  # continued from the checkpoint, not started over
    assert res.history == ref.history and res.best_epoch == ref.best_epoch
    (wa, ma), (wb, mb) = _run_outcome(tmp_path / "ref"), _run_outcome(run)
    _same_weights(wa, wb)
    assert ma == mb
    assert json.loads((run / "metrics.json").read_text())["feature_cache"] == {"hits": 2, "misses": 0}

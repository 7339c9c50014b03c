"""The loop's side of the method seam, with a fake method that has what the next methods need:
an EMA copy (timm's) updated after every optimizer step, two views of unlabeled images per
batch, an extra logged scalar, and state of its own in the checkpoint."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from timm.utils import ModelEmaV3
from torch import nn

from headstart.engine import Batches, Context, WithUnlabeled, fit
from headstart.engine.checkpoint import Checkpointer
from headstart.methods import Batch, Needs, Setup, TrainingMethod

CPU = torch.device("cpu")
_G = torch.Generator().manual_seed(0)
X = torch.randn(48, 4, generator=_G)
Y = (X[:, 0] > 0).long()
U = torch.randn(100, 4, generator=_G)


class _Crash(Exception):
    pass


class EmaTwoViews(TrainingMethod):
    """Supervised cross-entropy plus a consistency term between a weak and a strong view of
    unlabeled images; validated and saved through an EMA copy of the model."""

    needs = Needs(unlabeled_views=("weak", "strong"), unlabeled_ratio=2, cached_features=False)

    def __init__(self, model, options=None, setup=None, *, crash_at: int | None = None, oom_above: int | None = None):
        super().__init__(model, options, setup)
        self.ema = ModelEmaV3(model, decay=0.8)
        self.updates = 0
        self.pieces: list[tuple[int, int, int, int]] = []
        self.calls = 0
        self.crash_at, self.oom_above = crash_at, oom_above

    def step(self, batch: Batch) -> dict[str, torch.Tensor]:
        self.calls += 1
        if self.calls == self.crash_at:
            raise _Crash()
        weak, strong = batch.views["unlabeled_weak"], batch.views["unlabeled_strong"]
        if self.oom_above is not None and len(batch) > self.oom_above:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        self.pieces.append((len(batch.images), len(weak), len(strong), len(batch.extras["unlabeled_index"])))
        sup = F.cross_entropy(self.net(batch.images), batch.labels)
        target = self.net(weak).softmax(1).detach()
        consistency = F.mse_loss(self.net(strong).softmax(1), target)
        return {"loss": sup + consistency, "consistency": consistency.detach()}

    def after_step(self, step: int) -> None:
        self.ema.update(self.model, step=step)
        self.updates += 1

    def eval_module(self) -> nn.Module:
        return self.ema.module

    def state_dict(self):
        return {"ema": self.ema.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state) -> None:
        self.ema.module.load_state_dict(state["ema"])
        self.updates = int(state["updates"])


class Writer:
    def __init__(self) -> None:
        self.scalars: dict[str, list[float]] = {}

    def add_scalar(self, tag, value, step) -> None:
        self.scalars.setdefault(tag, []).append(float(value))


def _source(seed: int = 3) -> WithUnlabeled:
    labeled = Batches(X[:40], Y[:40], batch_size=16, shuffle=True, seed=seed)  # 3 steps an epoch: 16, 16, 8
    return WithUnlabeled(
        labeled, U, ratio=2, seed=seed,
        views={"weak": lambda t: t + 0.01 * torch.randn_like(t), "strong": lambda t: t + 0.5 * torch.randn_like(t)},
    )


def _run(folder=None, *, resume=None, init_seed: int = 0, writer=None, **method_kw):
    torch.manual_seed(init_seed)
    model = nn.Linear(4, 2)
    method = EmaTwoViews(model, setup=Setup(num_classes=2), **method_kw)
    opt = torch.optim.AdamW(model.parameters(), lr=0.05)
    ctx = Context(
        device=CPU, prepare=lambda t: t, writer=writer, show_progress=False, resume=resume,
        checkpoint=None if folder is None else Checkpointer(folder, every_steps=2, min_interval_s=0),
    )
    torch.manual_seed(100)  # the draws of views and dropout, the same in every run
    result = fit(method, _source(), Batches(X[40:], Y[40:], batch_size=8), epochs=4, optimizer=opt, lr_multipliers=np.linspace(1, 0.2, 12), context=ctx)
    return model, method, result


def test_after_step_runs_once_per_optimizer_step_and_the_ema_is_what_is_kept():
    writer = Writer()
    model, method, result = _run(writer=writer)
    assert method.updates == 12 == len(method.pieces)  # 4 epochs × 3 steps
    # every batch carries both views, twice as many unlabeled images as labeled ones
    assert method.pieces[:3] == [(16, 32, 32, 32), (16, 32, 32, 32), (8, 32, 32, 32)]
    # the extra scalar reaches the history and TensorBoard; validation scores the EMA copy
    assert all("train_consistency" in row and row["train_consistency"] > 0 for row in result.history)
    assert writer.scalars["train/train_consistency"] == [row["train_consistency"] for row in result.history]
    assert writer.scalars["train/val_acc"] == [row["val_acc"] for row in result.history]
    # the model now holds the kept (EMA) weights of the best epoch: finish() copied them over
    for a, b in zip(model.state_dict().values(), method.ema.module.state_dict().values()):
        assert torch.equal(a, b)
    with torch.no_grad():
        acc = (method.ema.module(X[40:]).argmax(1) == Y[40:]).float().mean().item()
    assert acc == result.history[result.best_epoch - 1]["val_acc"]


def test_an_out_of_memory_split_cuts_every_field_and_still_steps_once(capsys):
    ref_model, ref_method, ref = _run()
    model, method, result = _run(oom_above=8)
    assert "pieces" in capsys.readouterr().err
    assert method.updates == 12  # once per optimizer step, not per piece
    # 16 labeled + 32 + 32 unlabeled (and their 32 indices) → two pieces of 8 + 16 + 16 (+ 16);
    # from then on every batch runs in two pieces, the last (8 labeled) too
    assert method.pieces[:6] == [(8, 16, 16, 16)] * 4 + [(4, 16, 16, 16)] * 2
    assert len(method.pieces) == 24
    for a, b in zip(model.state_dict().values(), ref_model.state_dict().values()):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_resume_after_a_kill_is_exact_including_the_method_state(tmp_path):
    ref_model, ref_method, ref = _run(tmp_path / "ref")
    with pytest.raises(_Crash):
        _run(tmp_path / "b", crash_at=8)  # mid-epoch 3; the last checkpoint is at step 6
    state = Checkpointer(tmp_path / "b").load()
    assert state["format"] == 2 and state["step"] == 6 and state["method"]["updates"] == 6
    model, method, result = _run(tmp_path / "b", resume=state, init_seed=9)  # another init: all overwritten
    assert method.updates == 12 and len(method.pieces) == 6
    assert result.history == ref.history and result.best_epoch == ref.best_epoch
    for a, b in zip(model.state_dict().values(), ref_model.state_dict().values()):
        assert torch.equal(a, b)
    for a, b in zip(method.ema.module.state_dict().values(), ref_method.ema.module.state_dict().values()):
        assert torch.equal(a, b)


def test_an_older_checkpoint_format_is_refused(tmp_path):
    _run(tmp_path / "a")
    state = Checkpointer(tmp_path / "a").load()
    state.pop("format")
    with pytest.raises(Exception, match="older headstart whose format"):
        _run(tmp_path / "a", resume=state)

"""The loop, batches, input preparation and feature extraction."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from headstart.backbones import Preprocess, create_backbone
from headstart.engine import Batches, Context, Prepare, extract_features, fit
from headstart.finetune.recipe import cosine_schedule
from headstart.methods import Batch, Setup, Supervised


def _cpu() -> Context:
    """Tensors already model input, on the CPU, no progress bars (the old call's keywords)."""
    return Context(device=torch.device("cpu"), prepare=lambda t: t, show_progress=False)


def test_cosine_schedule_shape():
    m = cosine_schedule(total_steps=100, warmup_steps=10)
    assert len(m) == 100
    assert np.all(np.diff(m[:10]) > 0) and m[9] == pytest.approx(1.0)
    assert np.all(np.diff(m[10:]) <= 1e-12)
    assert m[-1] == pytest.approx(0.01, abs=1e-3)
    assert len(cosine_schedule(total_steps=1, warmup_steps=5)) == 1


def test_batches_cover_every_item_once_and_shuffle_reproducibly():
    x = torch.arange(50).float().unsqueeze(1)
    y = torch.arange(50)
    a = Batches(x, y, batch_size=8, shuffle=True, seed=3)
    seen = torch.cat([yy for _, yy in a])
    assert sorted(seen.tolist()) == list(range(50)) and len(a) == 7
    first = torch.cat([yy for _, yy in Batches(x, y, batch_size=8, shuffle=True, seed=3)])
    assert torch.equal(seen, first)
    assert not torch.equal(torch.cat([yy for _, yy in a]), seen)  # next epoch, new order
    for xx, yy in Batches(x, y, batch_size=8, augment=lambda t: t + 100):
        assert torch.equal(xx.squeeze(1), yy.float() + 100)


def test_prepare_matches_naive_normalisation():
    pre = Preprocess(mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3), image_size=224)
    x = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8)
    out = Prepare(pre, 16, torch.device("cpu"))(x)
    ref = (x.float() / 255 - torch.tensor(pre.mean).view(1, 3, 1, 1)) / torch.tensor(pre.std).view(1, 3, 1, 1)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    # resizing after normalising equals the naive resize-then-normalise (up and down; bilinear is this Preprocess's default)
    mean, std = torch.tensor(pre.mean).view(1, 3, 1, 1), torch.tensor(pre.std).view(1, 3, 1, 1)
    for size, antialias in ((40, False), (8, True)):
        resized = F.interpolate(x.float(), size=(size, size), mode="bilinear", align_corners=False, antialias=antialias)
        naive = (resized / 255 - mean) / std
        out = Prepare(pre, size, torch.device("cpu"))(x)
        assert out.shape == (2, 3, size, size) and out.is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(out, naive, atol=1e-4, rtol=1e-4)


def test_fit_learns_and_keeps_the_best_validation_epoch():
    torch.manual_seed(0)
    x = torch.randn(256, 5)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    model = nn.Linear(5, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=0.05)
    res = fit(
        Supervised(model, setup=Setup(num_classes=2, label_smoothing=0.0)),
        Batches(x[:200], y[:200], batch_size=32, shuffle=True),
        Batches(x[200:], y[200:], batch_size=64),
        epochs=8,
        optimizer=opt,
        lr_multipliers=cosine_schedule(total_steps=8 * 7, warmup_steps=3),
        context=_cpu(),
    )
    accs = [r["val_acc"] for r in res.history]
    assert max(accs) > 0.9
    assert res.history[res.best_epoch - 1]["val_acc"] == max(accs)
    with torch.no_grad():
        final = (model(x[200:]).argmax(1) == y[200:]).float().mean().item()
    assert final == pytest.approx(max(accs))  # the best epoch's weights are the ones kept
    assert res.history[-1]["train_loss"] < res.history[0]["train_loss"]


def test_nan_loss_stops_with_advice():
    model = nn.Linear(2, 2)
    x = torch.full((8, 2), float("nan"))
    with pytest.raises(FloatingPointError, match="lower --lr"):
        fit(
            Supervised(model, setup=Setup(num_classes=2, label_smoothing=0.1)),  # the old Supervised() default
            Batches(x, torch.zeros(8, dtype=torch.long), batch_size=4),
            None,
            epochs=1,
            optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
            lr_multipliers=np.ones(2),
            context=_cpu(),
        )


def test_extract_features_equals_forward_features():
    bb = create_backbone("efficientnet_lite0", num_classes=3).eval()
    imgs = torch.randint(0, 256, (5, 3, 28, 28), dtype=torch.uint8)
    prep = Prepare(bb.preprocess, 48, torch.device("cpu"))
    feats, labels = extract_features(
        bb, Batches(imgs, torch.arange(5), batch_size=2), prepare=prep, device=torch.device("cpu"), show_progress=False
    )
    with torch.no_grad():
        ref = bb.forward_features(prep(imgs))
    torch.testing.assert_close(feats, ref, atol=1e-5, rtol=1e-4)
    assert labels.tolist() == list(range(5))


def test_device_names_are_checked():
    from headstart.engine import pick_device
    from headstart.errors import HeadstartError

    assert pick_device("cpu").type == "cpu"
    assert pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(HeadstartError, match="not a device name"):
        pick_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(HeadstartError, match="no CUDA GPU"):
            pick_device("cuda")


class _SmallMemory(Supervised):
    """Runs out of (pretend) GPU memory on any batch bigger than ``limit``."""

    def __init__(self, model: nn.Module, limit: int) -> None:
        super().__init__(model, setup=Setup(num_classes=3, label_smoothing=0.0))
        self.limit = limit
        self.sizes: list[int] = []

    def step(self, batch: Batch):
        if len(batch.labels) > self.limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        self.sizes.append(len(batch.labels))
        return super().step(batch)


def _plain(model: nn.Module) -> Supervised:
    return Supervised(model, setup=Setup(num_classes=3, label_smoothing=0.0))


def _linear_run(make_method, x, y):
    """3 epochs of SGD on a linear model made after seeding; ``make_method(model)`` binds the
    method under test to it. Returns the model, the fit result and the method."""
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    method = make_method(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    result = fit(
        method, Batches(x, y, batch_size=16, shuffle=True, seed=1), None, epochs=3,
        optimizer=opt, lr_multipliers=np.ones(100), context=_cpu(),
    )
    return model, result, method


def test_out_of_memory_splits_the_batch_and_takes_the_same_steps(capsys):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(40, 4, generator=g), torch.randint(0, 3, (40,), generator=g)
    reference, ref_result, _ = _linear_run(_plain, x, y)
    model, result, small = _linear_run(lambda m: _SmallMemory(m, limit=5), x, y)
    # 16 → 2 pieces of 8 still too big → 4 pieces of 4; the 8-image last batch runs in 4 pieces of 2
    assert max(small.sizes) <= 5 and set(small.sizes) == {4, 2}
    assert "4 pieces" in capsys.readouterr().err
    # accumulated pieces weighted by their size: the gradient of the whole batch, the same steps
    for a, b in zip(reference.parameters(), model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert [h["train_loss"] for h in result.history] == pytest.approx([h["train_loss"] for h in ref_result.history], rel=1e-5)


def test_out_of_memory_on_a_single_image_says_what_to_set():
    from headstart.errors import RunError

    x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
    with pytest.raises(RunError, match="--batch-size"):
        _linear_run(lambda m: _SmallMemory(m, limit=0), x, y)

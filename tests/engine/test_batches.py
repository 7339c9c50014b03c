"""``WithUnlabeled``: labeled batches with views of unlabeled images, drawn reproducibly."""

from __future__ import annotations

import torch

from headstart.engine import Batches, WithUnlabeled
from headstart.engine.distributed import Distributed


def _source(dist=None, seed=0):
    x = torch.arange(20, dtype=torch.float32)[:, None]
    labeled = Batches(x, torch.arange(20), batch_size=8, shuffle=True, seed=seed, **({"dist": dist} if dist else {}))
    u = 1000 + torch.arange(50, dtype=torch.float32)[:, None]
    return WithUnlabeled(labeled, u, ratio=3, seed=seed, views={"plain": None, "plus": lambda t: t + 0.5})


def test_every_batch_has_the_views_of_the_same_drawn_images():
    batches = list(_source())
    assert [len(b.images) for b in batches] == [8, 8, 4]
    for b in batches:
        idx = b.extras["unlabeled_index"]
        assert len(idx) == 24 and idx.min() >= 0 and idx.max() < 50
        assert torch.equal(b.views["unlabeled_plain"][:, 0], 1000 + idx.float())  # the images the indices name
        assert torch.equal(b.views["unlabeled_plus"], b.views["unlabeled_plain"] + 0.5)  # two views of the same images
        assert torch.equal(b.images[:, 0], b.extras["labeled_index"].float())  # the labeled images the index names (x = row)
    labeled = torch.cat([b.images for b in batches])[:, 0]
    assert sorted(labeled.tolist()) == list(range(20))  # one pass over the labeled images per epoch


def test_resuming_mid_epoch_draws_what_the_uninterrupted_pass_drew():
    a = _source()
    first = list(a)  # epoch 1
    second = list(a)  # epoch 2
    b = _source()
    list(b)
    state = b.epoch_state
    b2 = _source(seed=0)
    b2.resume_from(b.next_state(), 1)  # epoch 2, after its first batch
    rest = list(b2)
    assert len(rest) == 2
    for got, want in zip(rest, second[1:]):
        assert torch.equal(got.images, want.images) and torch.equal(got.extras["unlabeled_index"], want.extras["unlabeled_index"])
    assert state is not None and not torch.equal(first[0].extras["unlabeled_index"], second[0].extras["unlabeled_index"])


def test_processes_share_each_draw_contiguously():
    whole = list(_source())
    parts = [list(_source(Distributed(rank=r, world_size=2, local_rank=r))) for r in (0, 1)]
    for i, b in enumerate(whole):
        got = torch.cat([parts[0][i].extras["unlabeled_index"], parts[1][i].extras["unlabeled_index"]])
        assert torch.equal(got, b.extras["unlabeled_index"])


def test_an_epoch_longer_than_the_labeled_pass_cycles_through_new_orders_and_resumes_anywhere():
    from headstart.engine import WithUnlabeled

    x, y, u = torch.arange(10).float()[:, None], torch.arange(10), torch.arange(100).float()[:, None]

    def source():
        return WithUnlabeled(Batches(x, y, batch_size=4, shuffle=True, seed=3), u, ratio=2, views={"plain": None}, seed=5, steps=7)

    src = source()
    assert len(src) == 7
    epoch1 = [(b.labels.tolist(), b.extras["unlabeled_index"].tolist()) for b in src]
    state = src.next_state()
    epoch2 = [(b.labels.tolist(), b.extras["unlabeled_index"].tolist()) for b in src]
    assert len(epoch1) == len(epoch2) == 7
    # passes of 3 batches (4 + 4 + 2 images): each pass covers every labeled image once, in its own order
    firsts = [sum((l for l, _ in epoch1[i:i + 3]), []) for i in (0, 3)]
    assert all(sorted(f) == list(range(10)) for f in firsts) and firsts[0] != firsts[1]
    for position in range(7):  # resumed at any step of epoch 2: the rest of epoch 2, exactly
        again = source()
        again.resume_from(state, position)
        assert [(b.labels.tolist(), b.extras["unlabeled_index"].tolist()) for b in again] == epoch2[position:]


def test_drop_last_yields_only_full_batches_and_counts_them():
    x, y = torch.arange(10).view(10, 1), torch.arange(10)
    kept = Batches(x, y, batch_size=4, shuffle=True, seed=3, drop_last=True)
    assert len(kept) == 2 and [len(b) for b, _ in kept] == [4, 4]
    full = Batches(x, y, batch_size=4, shuffle=True, seed=3)
    assert len(full) == 3 and [len(b) for b, _ in full] == [4, 4, 2]
    # the same order: dropping the last batch changes nothing before it
    a = torch.cat([b for b, _ in Batches(x, y, batch_size=4, shuffle=True, seed=5, drop_last=True)])
    b = torch.cat([b for b, _ in Batches(x, y, batch_size=4, shuffle=True, seed=5)])
    assert torch.equal(a, b[:8])

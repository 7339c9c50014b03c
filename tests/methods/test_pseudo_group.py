"""In a process group (2 CPU processes, gloo) every process holds the same pseudo-label
statistics, equal to one process's over the whole global batch: FlexMatch's claims gathered,
FreeMatch's EMAs and the alignment's running mean averaged, the logged counts summed."""

from __future__ import annotations

import os
import tempfile

import pytest
import torch
import torch.distributed as tdist
import torch.multiprocessing as mp

from headstart.methods._pseudo import Alignment, Thresholds, all_sum

pytestmark = pytest.mark.skipif(not tdist.is_available(), reason="this PyTorch build has no torch.distributed")

G = torch.Generator().manual_seed(0)
PROBS = torch.softmax(torch.randn(12, 3, generator=G) * 3, 1)  # one global batch of 12 unlabeled images
INDEX = torch.randperm(40, generator=G)[:12]


def _states(probs, index):
    flex = Thresholds("flexmatch", 0.7, 3, pool_size=40)
    free = Thresholds("freematch", 0.95, 3, pool_size=40, momentum=0.5)
    align = Alignment(torch.tensor([0.5, 0.3, 0.2]), momentum=0.5)
    for _ in range(2):
        flex.update(probs, index)
        free.update(probs)
        align(probs)
    counts = all_sum(torch.tensor([float(len(probs)), float(probs[:, 0].sum())], dtype=torch.float64))
    return {"claimed": flex.claimed, "flex": flex.per_class(), "free": free.per_class(), "running": align.running, "counts": counts}


def _worker(rank, world, init, out):
    tdist.init_process_group("gloo", init_method=f"file://{init}", rank=rank, world_size=world)
    try:
        share = torch.tensor_split(torch.arange(12), world)[rank]
        torch.save(_states(PROBS[share], INDEX[share]), f"{out}.{rank}")
    finally:
        tdist.destroy_process_group()


def test_two_processes_hold_the_statistics_one_process_has_over_the_global_batch(tmp_path):
    init = tempfile.mktemp(dir=tmp_path)
    out = str(tmp_path / "state")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    mp.spawn(_worker, args=(2, init, out), nprocs=2, join=True)
    single = _states(PROBS, INDEX)
    ranks = [torch.load(f"{out}.{r}", weights_only=True) for r in range(2)]
    for key in ("claimed", "flex", "free", "running"):
        torch.testing.assert_close(ranks[0][key], ranks[1][key], rtol=0, atol=0)
        torch.testing.assert_close(ranks[0][key], single[key], rtol=1e-6, atol=1e-7)
    # the logged counts are sums over the processes: the whole batch's
    torch.testing.assert_close(ranks[0]["counts"], single["counts"])
    assert (single["claimed"] >= 0).any()  # the test exercises claims, not an empty state

"""Data-parallel training on PyTorch's own engine (DistributedDataParallel).

``torchrun --nproc_per_node=N -m headstart train ...`` (or ``headstart train --devices N``)
starts N processes; each reads ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` from the environment and
joins one process group — NCCL on GPUs, gloo on CPUs. Every process sees the same global
batch order (same seed) and trains on its share of each global batch; DDP averages the
gradients, and the loss of an uneven share is weighted so the average equals the single-process
gradient of the whole batch. Rank 0 alone prints, writes the run folder, the checkpoints and
TensorBoard; the others stay quiet.

What differs from one process: BatchNorm layers that train normalise each process's share with
its own batch statistics (SyncBatchNorm runs on GPUs only), and random augmentation draws
differ per process. The test suite states the resulting tolerance.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from ..errors import HeadstartError


@dataclass(frozen=True)
class Distributed:
    """This process's place in the group; ``world_size == 1`` means no group at all."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        """``model`` inside DDP when in a group (parameters that train are synchronised;
        rank 0's weights and buffers are broadcast on construction), else unchanged."""
        if not self.enabled or not any(p.requires_grad for p in model.parameters()):
            return model
        ids = [device.index] if device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum of ``tensor`` over all processes (in place; returned for chaining)."""
        if self.enabled:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def gather(self, obj: Any) -> list[Any]:
        """Every process's ``obj``, in rank order (a one-element list without a group)."""
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def from_main(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every process: for decisions that must agree (e.g. whether a
        time-based checkpoint is due), which would otherwise deadlock the collectives."""
        if not self.enabled:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


SINGLE = Distributed()


def from_env(device: torch.device) -> Distributed:
    """The group torchrun described in the environment, joined; ``SINGLE`` when there is none.
    NCCL when the processes train on GPUs (``device``, as ``pick_device`` chose it), gloo
    otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return SINGLE
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    _stop_with_launcher()
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" and dist.is_nccl_available() else "gloo"
        if backend == "nccl":
            if local_rank >= torch.cuda.device_count():
                raise HeadstartError(
                    f"process {local_rank} has no GPU of its own ({torch.cuda.device_count()} visible); "
                    "start at most one process per GPU (--nproc_per_node / --devices)"
                )
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend)
    return Distributed(rank=rank, world_size=world, local_rank=local_rank)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _stop_with_launcher() -> None:
    """Workers stop like a Ctrl-C (training state saved, checkpoint kept) when torchrun asks
    them to (SIGTERM, e.g. after Ctrl-C) and when the launcher itself is killed: torchrun puts
    workers in their own session, so a ``kill -9`` of it would otherwise leave them running."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
        if os.getppid() == 1:  # the launcher died before the request took effect
            raise KeyboardInterrupt


def device_for(ctx: Distributed, requested: str, picked: torch.device) -> torch.device:
    """Each process of a GPU group uses its own GPU (``cuda:LOCAL_RANK``)."""
    if ctx.enabled and picked.type == "cuda":
        if requested not in ("auto", "cuda"):
            raise HeadstartError(f"--device {requested} cannot be combined with several processes; use --device auto or cuda")
        return torch.device("cuda", ctx.local_rank)
    return picked


def shutdown(ctx: Distributed) -> None:
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()

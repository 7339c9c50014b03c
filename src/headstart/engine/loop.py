"""The training loop. It knows the method protocol and nothing about strategies or data sets.

Inputs arrive as batches ``(x, y)`` from any iterable (in-memory tensors or a DataLoader);
``prepare`` turns a raw batch into model input on the device (uint8 pixels → normalised floats
at the run's resolution, or cached features passed through).
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import numpy as np
import torch
from torch import nn

from ..errors import RunError, TrainingDiverged
from ..methods import Method
from .checkpoint import Checkpointer, rng_state, set_rng_state
from .distributed import SINGLE, Distributed
from .progress import EpochProgress, console


class Batches:
    """Shuffled mini-batches over tensors held in memory (pixels or cached features).

    Faster than a DataLoader for data that already sits in one tensor: no worker processes, no
    per-item collation, one index per batch. ``augment`` runs per sample, so every image in a
    batch gets its own random crop; an augmentation with ``per_class = True`` is called with
    each image's label too (declared invariances can differ by class).

    In a process group (``dist``), every process draws the same global order and yields its
    contiguous share of each global batch; ``shard_weight`` (share size × processes / batch
    size) makes DDP's gradient average equal the whole batch's. A last global batch smaller
    than the number of processes is dropped (a process must never get an empty share).
    """

    def __init__(
        self,
        inputs: torch.Tensor,
        labels: torch.Tensor,
        *,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
        dist: Distributed = SINGLE,
    ) -> None:
        if len(inputs) != len(labels):
            raise ValueError("inputs and labels differ in length")
        self.inputs = inputs
        self.labels = labels
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.augment = augment
        self.dist = dist
        self.shard_weight = 1.0
        self.generator = torch.Generator().manual_seed(seed)
        self.epoch_state = self.generator.get_state()
        self._skip = 0

    def resume_from(self, generator_state: torch.Tensor, position: int) -> None:
        """Make the next pass draw its order from ``generator_state`` and skip the first
        ``position`` batches (already trained on before an interruption)."""
        self.generator.set_state(generator_state)
        self._skip = position

    def __len__(self) -> int:
        n, world = len(self.inputs), self.dist.world_size
        full, rest = divmod(n, self.batch_size)
        return full + (1 if rest >= world else 0)

    def __iter__(self):
        n = len(self.inputs)
        self.epoch_state = self.generator.get_state()
        skip, self._skip = self._skip, 0
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        world = self.dist.world_size
        for start in range(skip * self.batch_size, n, self.batch_size):
            idx = order[start : start + self.batch_size]
            if world > 1:
                if len(idx) < world:
                    break
                share = torch.tensor_split(idx, world)[self.dist.rank]
                self.shard_weight = len(share) * world / len(idx)
                idx = share
            x, y = self.inputs[idx], self.labels[idx]
            if self.augment is not None:
                if getattr(self.augment, "per_class", False):  # policies that differ by class take the label
                    x = torch.stack([self.augment(img, label) for img, label in zip(x, y.tolist())])
                else:
                    x = torch.stack([self.augment(img) for img in x])
            yield x, y


def cosine_schedule(*, total_steps: int, warmup_steps: int) -> np.ndarray:
    """Per-step learning-rate multipliers: linear warm-up then cosine decay to 1 % (precomputed,
    so the schedule can be inspected and resumed by index)."""
    total_steps = max(1, total_steps)
    warmup_steps = min(warmup_steps, total_steps - 1) if total_steps > 1 else 0
    steps = np.arange(total_steps, dtype=np.float64)
    warm = (steps + 1) / max(1, warmup_steps)
    progress = (steps - warmup_steps) / max(1, total_steps - warmup_steps)
    cos = 0.01 + 0.99 * 0.5 * (1 + np.cos(np.pi * np.clip(progress, 0, 1)))
    return np.where(steps < warmup_steps, warm, cos)


def autocast_for(device: torch.device):
    """bfloat16 autocast on GPU (no loss scaling needed); full precision on CPU, where bf16 is
    slower than fp32 on most laptop cores."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


@dataclass
class FitResult:
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    best_state: dict | None = None
    interrupted: bool = False
    seconds: float = 0.0


@torch.inference_mode()
def predict_logits(
    model: nn.Module, batches: Iterable, *, prepare: Callable, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and labels over a whole set, in order, with the model in eval mode and no autograd
    (a graph recorded for trainable weights would cost time and memory for nothing)."""
    was_training = model.training
    model.eval()
    outs, ys = [], []
    with torch.inference_mode(), autocast_for(device):
        for x, y in batches:
            outs.append(model(prepare(x)).float().cpu())
            ys.append(torch.as_tensor(y).cpu())
    model.train(was_training)
    return torch.cat(outs), torch.cat(ys)


def _out_of_memory(exc: RuntimeError) -> bool:
    """GPU memory ran out: PyTorch's own error, or a cuBLAS/cuDNN handle or workspace that
    could not be allocated because the caching allocator had taken everything."""
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    text = str(exc)
    return any(s in text for s in ("out of memory", "CUBLAS_STATUS_ALLOC_FAILED", "CUDNN_STATUS_ALLOC_FAILED", "NOT_ENOUGH_WORKSPACE"))


def _validation_scores(model: nn.Module, batches: Iterable, *, prepare: Callable, device: torch.device, dist: Distributed) -> tuple[float, float]:
    """Mean cross-entropy and accuracy over a validation set; in a group each process scores
    its share of every batch and the sums are added up."""
    was_training = model.training
    model.eval()
    sums = torch.zeros(3, dtype=torch.float64, device=device)  # loss * n, correct, n
    with torch.inference_mode(), autocast_for(device):
        for x, y in batches:
            logits = model(prepare(x)).float()
            y = torch.as_tensor(y).to(device)
            sums[0] += nn.functional.cross_entropy(logits, y, reduction="sum").double()
            sums[1] += (logits.argmax(1) == y).sum()
            sums[2] += len(y)
    model.train(was_training)
    loss_sum, correct, n = dist.sum(sums).tolist()
    return loss_sum / max(1.0, n), correct / max(1.0, n)


def fit(
    *,
    model: nn.Module,
    method: Method,
    train: Batches,
    val: Iterable | None,
    epochs: int,
    optimizer: torch.optim.Optimizer,
    lr_multipliers: np.ndarray,
    prepare: Callable[[torch.Tensor], torch.Tensor],
    device: torch.device,
    writer=None,
    tag: str = "train",
    show_progress: bool = True,
    epoch_offset: int = 0,
    checkpoint: Checkpointer | None = None,
    resume: dict[str, Any] | None = None,
    phase_info: dict[str, Any] | None = None,
    dist: Distributed = SINGLE,
) -> FitResult:
    """Train for ``epochs`` epochs; keep the weights of the best validation epoch.

    Without a validation set the final epoch is kept. With a ``checkpoint``, the full training
    state is saved after every epoch (and every ``checkpoint.every_steps`` steps); ``resume``
    (a state that ``checkpoint`` saved for this phase) continues bit for bit where it stopped.
    ``phase_info`` is stored in each checkpoint for the caller. A keyboard interrupt ends
    training after the current step and returns what was learned so far (marked
    ``interrupted``); the last checkpoint stays, so ``--resume`` can still finish the run.

    In a process group (``dist``) the model trains inside DDP on each process's share of the
    batches (``train`` and ``val`` must be sharded with the same ``dist``); only rank 0 writes
    checkpoints, and it stores every process's random state.

    A step that runs out of GPU memory is retried in two halves with gradients accumulated
    (then four, ...): the same batch and optimizer step, in pieces that fit.
    """
    result = FitResult()
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    best_acc = -1.0
    step = 0
    start_epoch, position = 0, 0
    # the epoch so far: loss * n and correct on the device (no per-step sync), images seen
    sums = torch.zeros(2, dtype=torch.float64, device=device)
    seen = 0
    if resume is not None:
        if "world_size" not in resume:
            raise RunError("the checkpoint was written by an older headstart whose format this one cannot continue; train again")
        if int(resume["world_size"]) != dist.world_size:
            raise RunError(
                f"the checkpoint was written by {resume['world_size']} process(es); resume it with the same "
                f"number (now {dist.world_size}) so every process continues its own random state"
            )
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        best_acc, result.best_epoch, result.best_state = resume["best_acc"], resume["best_epoch"], resume["best_state"]
        result.history = list(resume["history"])
        step, start_epoch, position = resume["step"], resume["epoch"], resume["position"]
        sums, seen = resume["sums"][dist.rank].to(device), int(resume["seen"][dist.rank])
        train.resume_from(resume["batches"], position)
        set_rng_state(resume["rng"][dist.rank])
    net = dist.wrap(model, device)

    def snapshot(epoch: int, position: int, generator_state: torch.Tensor) -> None:
        # every process's own running sums and random state; rank 0 writes them all
        per_rank = dist.gather((sums.cpu(), seen, rng_state()))
        if not dist.is_main:
            return
        checkpoint.save(  # type: ignore[union-attr]
            {
                "tag": tag,
                "epoch": epoch,
                "position": position,
                "step": step,
                "world_size": dist.world_size,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "best_acc": best_acc,
                "best_epoch": result.best_epoch,
                "best_state": result.best_state,
                "history": result.history,
                "sums": [r[0] for r in per_rank],
                "seen": [r[1] for r in per_rank],
                "batches": generator_state,
                "rng": [r[2] for r in per_rank],
                "info": phase_info or {},
            }
        )

    micro = 1  # pieces each batch is split into after running out of GPU memory

    def train_step(x: torch.Tensor, y: torch.Tensor) -> None:
        """Forward and backward over one batch (in ``micro`` pieces), adding to ``sums``."""
        pieces = zip(x.tensor_split(micro), y.tensor_split(micro)) if micro > 1 else [(x, y)]
        step_sums = torch.zeros_like(sums)  # added to the epoch's only once the whole batch went through
        for xp, yp in pieces:
            with autocast_for(device):
                out = method.step(net, xp, yp)
            loss = out["loss"]
            weight = train.shard_weight * len(yp) / len(y)
            (loss if weight == 1.0 else loss * weight).backward()
            step_sums[0] += loss.detach().double() * len(yp)
            if "logits" in out:
                step_sums[1] += (out["logits"].detach().argmax(1) == yp).sum()
        sums.add_(step_sums)

    def check_finite(epoch: int) -> None:
        if not torch.isfinite(sums[0]):
            raise TrainingDiverged(
                f"the loss became {sums[0].item()} in epoch {epoch_offset + epoch + 1}; lower --lr "
                f"(now {base_lrs[0]:g}) or check the data for corrupt values, then train again (the same --output "
                "will do: no finished run was written there)"
                + (
                    f"; the last good checkpoint is kept in {checkpoint.path} for inspection (--resume would repeat "
                    "the same steps with the same settings)"
                    if checkpoint and checkpoint.path.exists() else ""
                )
            )

    # Reading the loss on the host waits for the device: every step on a CPU (free), every few
    # dozen steps on a GPU, and always before a checkpoint, so no non-finite state is saved.
    finite_every = 1 if device.type == "cpu" else 32
    t0 = time.perf_counter()
    steps_per_epoch = len(train)
    try:
        for epoch in range(start_epoch, epochs):
            model.train()
            with EpochProgress(
                f"{tag} epoch {epoch_offset + epoch + 1}/{epoch_offset + epochs}", steps_per_epoch, show_progress, transient=True
            ) as bar:
                bar.advance_by(position)
                for x, y in train:
                    mult = float(lr_multipliers[min(step, len(lr_multipliers) - 1)])
                    for group, base in zip(optimizer.param_groups, base_lrs):
                        group["lr"] = base * mult
                    x = prepare(x)
                    y = y.to(device, non_blocking=True)
                    optimizer.zero_grad(set_to_none=True)
                    while True:
                        try:
                            train_step(x, y)
                            break
                        except RuntimeError as exc:
                            if not _out_of_memory(exc):
                                raise
                        # past the handler, the failed attempt's tensors (held by its traceback) are freed
                        if dist.enabled or micro >= len(y):
                            raise RunError(
                                f"out of GPU memory at batch size {len(y)}"
                                + (" per process" if dist.enabled else f" even in {micro} pieces")
                                + "; pass a smaller --batch-size or --image-size"
                            )
                        optimizer.zero_grad(set_to_none=True)
                        torch.cuda.empty_cache()
                        micro *= 2
                        console.print(
                            f"[yellow]out of GPU memory: each batch of {len(y)} now runs in {micro} pieces with "
                            f"gradients accumulated (same optimizer steps); --batch-size {len(y) // micro} "
                            "would avoid the retry[/yellow]"
                        )
                    step += 1
                    position += 1
                    seen += len(y)
                    if step % finite_every == 0:
                        check_finite(epoch)
                    optimizer.step()
                    if bar.active:  # reading the sums waits for the device: only for a visible bar
                        bar.advance(loss=sums[0].item() / seen, acc=sums[1].item() / seen)
                    else:
                        bar.advance()
                    if checkpoint and checkpoint.every_steps and step % checkpoint.every_steps == 0 and position < steps_per_epoch:
                        check_finite(epoch)
                        snapshot(epoch, position, train.epoch_state)
            check_finite(epoch)
            totals = dist.sum(torch.cat([sums, torch.tensor([float(seen)], dtype=torch.float64, device=device)])).tolist()
            total_seen = max(1.0, totals[2])
            row = {
                "epoch": epoch_offset + epoch + 1,
                "phase": tag,
                "train_loss": totals[0] / total_seen,
                "train_acc": totals[1] / total_seen,
                "lr": optimizer.param_groups[0]["lr"],
            }
            position = 0
            sums.zero_()
            seen = 0
            if val is not None:
                row["val_loss"], row["val_acc"] = _validation_scores(model, val, prepare=prepare, device=device, dist=dist)
            if writer is not None:
                for k, v in row.items():
                    if k not in ("epoch", "phase"):
                        writer.add_scalar(f"{tag}/{k}", v, row["epoch"])
                for g in optimizer.param_groups:
                    writer.add_scalar(f"{tag}/lr/{g.get('name', 'group')}", g["lr"], row["epoch"])
            result.history.append(row)
            if show_progress and ((epoch + 1) % max(1, epochs // 10) == 0 or epoch + 1 == epochs):
                console.print(
                    f"{tag} epoch {row['epoch']}/{epoch_offset + epochs}: loss {row['train_loss']:.4f}, "
                    f"train acc {row['train_acc']:.3f}"
                    + (f", val acc {row['val_acc']:.3f}, val loss {row['val_loss']:.4f}" if "val_acc" in row else "")
                )
            score = row.get("val_acc", None)
            if score is None or score > best_acc:
                best_acc = -1.0 if score is None else score
                result.best_epoch = row["epoch"]
                if score is not None:
                    result.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            if checkpoint is not None and dist.from_main(checkpoint.due()):
                snapshot(epoch + 1, 0, train.generator.get_state())
    except KeyboardInterrupt:
        result.interrupted = True
    result.seconds = time.perf_counter() - t0
    if result.best_state is not None:
        model.load_state_dict(result.best_state)
    return result

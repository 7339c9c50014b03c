"""The training loop. It runs a method (``methods/base.py``) and never knows which one.

``fit`` takes the method, its batch sources, an optimizer with its per-step learning-rate
multipliers, and a :class:`Context` (device, process group, writer, checkpointer, resume state,
progress). Per step it prepares every image field of the batch, calls ``method.step``, steps the
optimizer and calls ``method.after_step``; it sums every scalar the method returns for the
console, ``metrics.json`` history and TensorBoard, validates through ``method.eval_step`` /
``method.score`` and checkpoints the method's own state with the rest.
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
from ..methods.base import Batch, TrainingMethod, as_batch
from .batches import Batches
from .checkpoint import Checkpointer, rng_state, set_rng_state
from .distributed import SINGLE, Distributed
from .progress import EpochProgress, console

CHECKPOINT_FORMAT = 2
"""Bumped whenever a checkpoint's layout changes; a checkpoint of another format is refused
(2: method state and every logged scalar's running sum)."""

__all__ = ["Batches", "CHECKPOINT_FORMAT", "Context", "FitResult", "autocast_for", "fit", "predict_logits"]


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
    stopped_at: int | None = None  # the epoch after which the time budget stopped training


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


@dataclass
class Context:
    """Where and how ``fit`` runs, apart from what it trains.

    ``prepare`` turns the raw image fields of a batch into model input on ``device`` (uint8
    pixels → normalised floats at the run's resolution, or cached features moved). ``tag``
    names the phase in logs and checkpoints, ``epoch_offset`` numbers its epochs after earlier
    phases', ``phase_info`` is stored in each checkpoint for the caller. ``resume`` is a state
    that ``checkpoint`` saved for this phase.
    """

    device: torch.device
    prepare: Callable[[torch.Tensor], torch.Tensor]
    dist: Distributed = SINGLE
    writer: Any = None
    checkpoint: Checkpointer | None = None
    resume: dict[str, Any] | None = None
    show_progress: bool = True
    tag: str = "train"
    epoch_offset: int = 0
    phase_info: dict[str, Any] | None = None
    deadline: float | None = None  # time.perf_counter() by which training should end (--time-budget)


def _validate(method: TrainingMethod, batches: Iterable, ctx: Context) -> dict[str, float]:
    """The method's validation scores; in a group each process sums its share of every batch
    and the sums are added up before scoring."""
    module = method.eval_module()
    was_training = module.training
    module.eval()
    sums: dict[str, torch.Tensor] = {}
    with torch.inference_mode(), autocast_for(ctx.device):
        for raw in batches:
            batch = as_batch(raw).map_images(ctx.prepare).labels_to(ctx.device)
            for key, value in method.eval_step(batch).items():
                sums[key] = sums.get(key, torch.zeros((), dtype=torch.float64, device=ctx.device)) + value.double()
    module.train(was_training)
    keys = sorted(sums)
    totals = ctx.dist.sum(torch.stack([sums[k] for k in keys])).tolist() if keys else []
    return method.score(dict(zip(keys, totals)))


class _Run:
    """The state of one ``fit`` call, saved whole in a checkpoint."""

    def __init__(self, method: TrainingMethod, optimizer: torch.optim.Optimizer, ctx: Context) -> None:
        self.method, self.optimizer, self.ctx = method, optimizer, ctx
        self.result = FitResult()
        self.best_score = float("-inf")
        self.step = 0
        self.epoch = 0
        self.position = 0
        # the epoch so far: each scalar × images on the device (no per-step sync), images seen
        self.sums: dict[str, torch.Tensor] = {}
        self.seen = 0
        self.base_lrs = [g["lr"] for g in optimizer.param_groups]
        self.micro = 1  # pieces each batch is split into after running out of GPU memory
        # Reading the loss on the host waits for the device: every step on a CPU (free), every few
        # dozen steps on a GPU, and always before a checkpoint, so no non-finite state is saved.
        self.finite_every = 1 if ctx.device.type == "cpu" else 32

    def load(self, resume: dict[str, Any]) -> Any:
        """Continue from a checkpoint of this phase; the batch state to resume the source from."""
        ctx = self.ctx
        if resume.get("format") != CHECKPOINT_FORMAT:
            raise RunError("the checkpoint was written by an older headstart whose format this one cannot continue; train again")
        if int(resume["world_size"]) != ctx.dist.world_size:
            raise RunError(
                f"the checkpoint was written by {resume['world_size']} process(es); resume it with the same "
                f"number (now {ctx.dist.world_size}) so every process continues its own random state"
            )
        self.method.trainable().load_state_dict(resume["model"])
        self.method.load_state_dict(resume["method"])
        self.optimizer.load_state_dict(resume["optimizer"])
        self.best_score, self.result.best_epoch, self.result.best_state = resume["best_score"], resume["best_epoch"], resume["best_state"]
        self.result.history = list(resume["history"])
        self.step, self.epoch, self.position = resume["step"], resume["epoch"], resume["position"]
        self.sums = {k: v.to(ctx.device) for k, v in resume["sums"][ctx.dist.rank].items()}
        self.seen = int(resume["seen"][ctx.dist.rank])
        set_rng_state(resume["rng"][ctx.dist.rank])
        return resume["batches"]

    def snapshot(self, epoch: int, position: int, batch_state: Any) -> None:
        """Save everything (rank 0 writes; every process's own sums and random state)."""
        ctx = self.ctx
        per_rank = ctx.dist.gather(({k: v.cpu() for k, v in self.sums.items()}, self.seen, rng_state()))
        if not ctx.dist.is_main:
            return
        ctx.checkpoint.save(  # type: ignore[union-attr]
            {
                "format": CHECKPOINT_FORMAT,
                "tag": ctx.tag,
                "epoch": epoch,
                "position": position,
                "step": self.step,
                "world_size": ctx.dist.world_size,
                "model": self.method.trainable().state_dict(),
                "method": self.method.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "best_score": self.best_score,
                "best_epoch": self.result.best_epoch,
                "best_state": self.result.best_state,
                "history": self.result.history,
                "sums": [r[0] for r in per_rank],
                "seen": [r[1] for r in per_rank],
                "batches": batch_state,
                "rng": [r[2] for r in per_rank],
                "info": ctx.phase_info or {},
            }
        )

    def optimizer_step(self, batch: Batch, lr_multipliers: np.ndarray, shard_weight: float) -> None:
        """One optimizer step over a prepared batch: the scheduled rates, forward and backward
        (split into pieces after running out of GPU memory), the step, the method's hook."""
        ctx, optimizer = self.ctx, self.optimizer
        mult = float(lr_multipliers[min(self.step, len(lr_multipliers) - 1)])
        for group, base in zip(optimizer.param_groups, self.base_lrs):
            group["lr"] = base * mult
        optimizer.zero_grad(set_to_none=True)
        while True:
            try:
                self._forward_backward(batch, shard_weight)
                break
            except RuntimeError as exc:
                if not _out_of_memory(exc):
                    raise
            # past the handler, the failed attempt's tensors (held by its traceback) are freed
            if ctx.dist.enabled or self.micro >= len(batch):
                raise RunError(
                    f"out of GPU memory at batch size {len(batch)}"
                    + (" per process" if ctx.dist.enabled else f" even in {self.micro} pieces")
                    + "; pass a smaller --batch-size or --image-size"
                )
            optimizer.zero_grad(set_to_none=True)
            torch.cuda.empty_cache()
            self.micro *= 2
            console.print(
                f"[yellow]out of GPU memory: each batch of {len(batch)} now runs in {self.micro} pieces with "
                f"gradients accumulated (same optimizer steps); --batch-size {len(batch) // self.micro} "
                "would avoid the retry[/yellow]"
            )
        self.step += 1
        self.position += 1
        self.seen += len(batch)
        if self.step % self.finite_every == 0:
            self.check_finite()
        optimizer.step()
        self.method.after_step(self.step)

    def _forward_backward(self, batch: Batch, shard_weight: float) -> None:
        """Forward and backward over one batch in ``micro`` pieces (every field split alike);
        the scalars join the epoch's sums only once the whole batch went through."""
        outs = []
        for piece in batch.split(self.micro):
            with autocast_for(self.ctx.device):
                out = self.method.step(piece)
            loss = out["loss"]
            weight = shard_weight * len(piece) / len(batch)
            (loss if weight == 1.0 else loss * weight).backward()
            outs.append((out, len(piece)))
        for out, n in outs:
            self.add(out, n)

    def keep_if_best(self, row: dict[str, Any]) -> None:
        """Keep the validated module's weights when the epoch's first score is the best so far
        (without validation, the last epoch is the one kept)."""
        scores = [v for k, v in row.items() if k.startswith("val_")]
        if not scores or scores[0] > self.best_score:
            self.result.best_epoch = row["epoch"]
            if scores:
                self.best_score = scores[0]
                self.result.best_state = {k: v.detach().clone() for k, v in self.method.eval_module().state_dict().items()}

    def add(self, scalars: dict[str, torch.Tensor], weight: int) -> None:
        for key, value in scalars.items():
            if key not in self.sums:
                self.sums[key] = torch.zeros((), dtype=torch.float64, device=self.ctx.device)
            self.sums[key] += value.detach().double() * weight

    def check_finite(self) -> None:
        loss = self.sums.get("loss")
        if loss is not None and not torch.isfinite(loss):
            ctx = self.ctx
            raise TrainingDiverged(
                f"the loss became {loss.item()} in epoch {ctx.epoch_offset + self.epoch + 1}; lower --lr "
                f"(now {self.base_lrs[0]:g}) or check the data for corrupt values, then train again (the same --output "
                "will do: no finished run was written there)"
                + (
                    f"; the last good checkpoint is kept in {ctx.checkpoint.path} for inspection (--resume would repeat "
                    "the same steps with the same settings)"
                    if ctx.checkpoint and ctx.checkpoint.path.exists() else ""
                )
            )

    def epoch_row(self) -> dict[str, Any]:
        """The epoch's training scalars (summed over processes), and the running sums reset."""
        keys = list(self.sums)
        stacked = torch.stack([self.sums[k] for k in keys] + [torch.tensor(float(self.seen), dtype=torch.float64, device=self.ctx.device)])
        totals = self.ctx.dist.sum(stacked).tolist()
        n = max(1.0, totals[-1])
        row: dict[str, Any] = {"epoch": self.ctx.epoch_offset + self.epoch + 1, "phase": self.ctx.tag}
        row.update({f"train_{k}": v / n for k, v in zip(keys, totals)})
        row["lr"] = self.optimizer.param_groups[0]["lr"]
        self.sums, self.seen, self.position = {}, 0, 0
        return row


def fit(
    method: TrainingMethod,
    train: Any,
    val: Iterable | None,
    *,
    epochs: int,
    optimizer: torch.optim.Optimizer,
    lr_multipliers: np.ndarray,
    context: Context,
) -> FitResult:
    """Train ``method`` for ``epochs`` epochs over the batch source ``train``; keep the module
    the method names (``eval_module``) at its best validation epoch (by the first score).

    Without a validation set the final epoch is kept. With ``context.checkpoint`` the full
    training state — the method's own included — is saved after every epoch (and every
    ``checkpoint.every_steps`` steps); ``context.resume`` continues bit for bit where it
    stopped. A keyboard interrupt ends training after the current step and returns what was
    learned so far (marked ``interrupted``); the last checkpoint stays, so ``--resume`` can
    still finish the run.

    In a process group (``context.dist``) the trainable module trains inside DDP on each
    process's share of the batches (``train`` and ``val`` must be sharded with the same group);
    only rank 0 writes checkpoints, and it stores every process's random state.

    A step that runs out of GPU memory is retried with every field of the batch in two halves,
    gradients accumulated (then four, ...): the same batch and optimizer step, in pieces that
    fit; ``after_step`` still runs once per optimizer step.
    """
    ctx = context
    run = _Run(method, optimizer, ctx)
    if ctx.resume is not None:
        train.resume_from(run.load(ctx.resume), run.position)
    method.attach(ctx.dist.wrap(method.trainable(), ctx.device))
    t0 = time.perf_counter()
    steps_per_epoch = len(train)
    module = method.trainable()
    try:
        for run.epoch in range(run.epoch, epochs):
            t_epoch_start = time.perf_counter()
            module.train()
            with EpochProgress(
                f"{ctx.tag} epoch {ctx.epoch_offset + run.epoch + 1}/{ctx.epoch_offset + epochs}", steps_per_epoch,
                ctx.show_progress, transient=True,
            ) as bar:
                bar.advance_by(run.position)
                for raw in train:
                    run.optimizer_step(as_batch(raw).map_images(ctx.prepare).labels_to(ctx.device), lr_multipliers, train.shard_weight)
                    if bar.active:  # reading the sums waits for the device: only for a visible bar
                        bar.advance(**{k: v.item() / run.seen for k, v in run.sums.items()})
                    else:
                        bar.advance()
                    cp = ctx.checkpoint
                    if cp and cp.every_steps and run.step % cp.every_steps == 0 and run.position < steps_per_epoch:
                        run.check_finite()
                        run.snapshot(run.epoch, run.position, train.epoch_state)
            run.check_finite()
            row = run.epoch_row()
            row.update(method.epoch_info())
            if val is not None:
                row.update(_validate(method, val, ctx))
            _log(row, optimizer, ctx, last=run.epoch + 1 == epochs, every=max(1, epochs // 10), total=ctx.epoch_offset + epochs)
            run.result.history.append(row)
            run.keep_if_best(row)
            if ctx.checkpoint is not None and ctx.dist.from_main(ctx.checkpoint.due()):
                run.snapshot(run.epoch + 1, 0, train.next_state())
            if ctx.deadline is not None and run.epoch + 1 < epochs:
                t_epoch = (time.perf_counter() - t_epoch_start)
                if ctx.dist.from_main(time.perf_counter() + t_epoch > ctx.deadline):
                    run.result.stopped_at = row["epoch"]
                    console.print(
                        f"[yellow]--time-budget: stopped after epoch {row['epoch']} of {ctx.epoch_offset + epochs} "
                        f"(one more epoch, ~{t_epoch:.0f} s, would not fit)[/yellow]"
                    )
                    break
    except KeyboardInterrupt:
        run.result.interrupted = True
    run.result.seconds = time.perf_counter() - t0
    if run.result.best_state is not None:
        method.eval_module().load_state_dict(run.result.best_state)
    method.finish()
    return run.result


def _log(row: dict[str, Any], optimizer: torch.optim.Optimizer, ctx: Context, *, last: bool, every: int, total: int) -> None:
    """An epoch's row to TensorBoard (every scalar, and each group's rate) and, every few
    epochs, one summary line to the console."""
    if ctx.writer is not None:
        for k, v in row.items():
            if isinstance(v, (list, tuple)):
                for i, x in enumerate(v):
                    ctx.writer.add_scalar(f"{ctx.tag}/{k}/{i}", x, row["epoch"])
            elif k not in ("epoch", "phase") and v is not None:
                ctx.writer.add_scalar(f"{ctx.tag}/{k}", v, row["epoch"])
        for g in optimizer.param_groups:
            ctx.writer.add_scalar(f"{ctx.tag}/lr/{g.get('name', 'group')}", g["lr"], row["epoch"])
    if ctx.show_progress and ((row["epoch"] - ctx.epoch_offset) % every == 0 or last):
        train_part = ", ".join(
            f"{'loss' if k == 'train_loss' else k.replace('_', ' ')} {v:.4f}" if k == "train_loss" else f"{k.replace('_', ' ')} {v:.3f}"
            for k, v in row.items() if k.startswith(("train_", "pool_")) and isinstance(v, (int, float))
        )
        val_part = ", ".join(f"{k.replace('_', ' ')} {v:.4f}" if k == "val_loss" else f"{k.replace('_', ' ')} {v:.3f}"
                             for k, v in row.items() if k.startswith("val_"))
        console.print(f"{ctx.tag} epoch {row['epoch']}/{total}: {train_part}" + (f", {val_part}" if val_part else ""))

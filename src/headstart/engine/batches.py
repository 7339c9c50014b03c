"""Batch sources: what the loop draws its batches from.

A source is iterable (one pass per epoch, yielding :class:`~headstart.methods.base.Batch` or,
for labeled images alone, ``(images, labels)``), has a length in batches, a ``shard_weight``
for the batch just drawn, and can be resumed mid-epoch: ``epoch_state`` (the random state the
current pass was drawn from), ``next_state()`` (the state the next pass will be drawn from) and
``resume_from(state, position)``. Which sources a run builds is decided by what its method
declares it needs (``methods.base.Needs``), never by the loop.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from ..methods.base import Batch
from .distributed import SINGLE, Distributed


class Batches:
    """Shuffled mini-batches over tensors held in memory (pixels or cached features).

    Faster than a DataLoader for data that already sits in one tensor: no worker processes, no
    per-item collation, one index per batch. ``augment`` runs per sample, so every image in a
    batch gets its own random crop; an augmentation with ``per_class = True`` is called with
    each image's label too (declared invariances can differ by class).

    In a process group (``dist``), every process draws the same global order and yields its
    contiguous share of each global batch; ``shard_weight`` (share size × processes / batch
    size) makes DDP's gradient average equal the whole batch's. A last global batch smaller
    than the number of processes is dropped (a process must never get an empty share);
    ``drop_last`` drops any smaller last batch (a contrastive batch of 3 teaches little).
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
        drop_last: bool = False,
    ) -> None:
        if len(inputs) != len(labels):
            raise ValueError("inputs and labels differ in length")
        self.inputs = inputs
        self.labels = labels
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.augment = augment
        self.dist = dist
        self.drop_last = drop_last
        self.shard_weight = 1.0
        self.generator = torch.Generator().manual_seed(seed)
        self.epoch_state = self.generator.get_state()
        self._skip = 0
        self.last_index = torch.zeros(0, dtype=torch.long)

    def next_state(self) -> torch.Tensor:
        """The random state the next pass will draw its order from."""
        return self.generator.get_state()

    def resume_from(self, generator_state: torch.Tensor, position: int) -> None:
        """Make the next pass draw its order from ``generator_state`` and skip the first
        ``position`` batches (already trained on before an interruption)."""
        self.generator.set_state(generator_state)
        self._skip = position

    def skip_pass(self) -> None:
        """Draw one pass's order and yield nothing (a pass trained on before an interruption)."""
        if self.shuffle:
            torch.randperm(len(self.inputs), generator=self.generator)

    def __len__(self) -> int:
        n, world = len(self.inputs), self.dist.world_size
        full, rest = divmod(n, self.batch_size)
        return full + (1 if rest >= world and not self.drop_last else 0)

    def __iter__(self):
        n = len(self.inputs)
        self.epoch_state = self.generator.get_state()
        skip, self._skip = self._skip, 0
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        world = self.dist.world_size
        for start in range(skip * self.batch_size, n, self.batch_size):
            idx = order[start : start + self.batch_size]
            if self.drop_last and len(idx) < self.batch_size:
                break
            if world > 1:
                if len(idx) < world:
                    break
                share = torch.tensor_split(idx, world)[self.dist.rank]
                self.shard_weight = len(share) * world / len(idx)
                idx = share
            self.last_index = idx  # which images the batch about to be yielded holds (``WithUnlabeled`` passes it on)
            x, y = self.inputs[idx], self.labels[idx]
            if self.augment is not None:
                if getattr(self.augment, "per_class", False):  # policies that differ by class take the label
                    x = torch.stack([self.augment(img, label) for img, label in zip(x, y.tolist())])
                else:
                    x = torch.stack([self.augment(img) for img in x])
            yield x, y


class WithUnlabeled:
    """Labeled batches from ``labeled``, each with ``ratio`` × as many unlabeled images drawn
    from ``unlabeled`` (uint8 pixels or features) and seen through each of ``views``: the batch
    holds them as ``unlabeled_<name>`` (e.g. ``unlabeled_weak`` and ``unlabeled_strong``, two
    views of the same images), which images were drawn as the extra ``unlabeled_index``, and
    which labeled images the batch holds as ``labeled_index``.

    Every step draws ``ratio × batch_size`` unlabeled images (also beside a smaller last labeled
    batch), uniformly with replacement from their own generator (seeded apart from the labeled
    order). An epoch is ``steps`` batches: by default one pass over the labeled images however
    large the pool is; more (e.g. enough to draw the pool's size) cycle through the labeled
    images again, each pass in a new order. In a process group each process takes its
    contiguous share, as for the labeled images. A view is a per-image function (an
    augmentation) or ``None`` (the image as it is).
    """

    def __init__(
        self,
        labeled: Batches,
        unlabeled: torch.Tensor,
        *,
        ratio: int,
        views: dict[str, Callable[[torch.Tensor], torch.Tensor] | None],
        seed: int = 0,
        steps: int | None = None,
    ) -> None:
        if ratio < 1:
            raise ValueError("ratio must be at least 1 unlabeled image per labeled image")
        if len(unlabeled) == 0:
            raise ValueError("no unlabeled images to draw from")
        self.labeled = labeled
        self.unlabeled = unlabeled
        self.ratio = ratio
        self.views = dict(views)
        self.generator = torch.Generator().manual_seed(seed + 7919)
        self.epoch_state: Any = self.next_state()
        self.steps = int(steps) if steps else len(labeled)
        if self.steps < 1 or len(labeled) < 1:
            raise ValueError("an epoch needs at least one labeled batch")
        self._skip = 0

    @property
    def shard_weight(self) -> float:
        return self.labeled.shard_weight

    def __len__(self) -> int:
        return self.steps

    def next_state(self) -> dict[str, torch.Tensor]:
        return {"labeled": self.labeled.next_state(), "unlabeled": self.generator.get_state()}

    def resume_from(self, state: dict[str, torch.Tensor], position: int) -> None:
        self.labeled.resume_from(state["labeled"], 0)
        self.generator.set_state(state["unlabeled"])
        self._skip = position

    def _labeled(self, skip: int):
        """The epoch's ``steps`` labeled batches, cycling through passes; the first ``skip``
        are not yielded (a pass wholly trained on before an interruption only draws its order)."""
        per_pass, done = len(self.labeled), 0
        while done < self.steps:
            take = min(per_pass, self.steps - done)  # this pass's batches that belong to the epoch
            if skip - done >= take:
                self.labeled.skip_pass()
                done += take
                continue
            offset = max(0, skip - done)
            self.labeled._skip = offset
            for k, pair in enumerate(self.labeled, offset):
                yield pair
                if k + 1 >= take:
                    break
            done += take

    def __iter__(self):
        self.epoch_state = self.next_state()
        skip, self._skip = self._skip, 0
        world, rank = self.labeled.dist.world_size, self.labeled.dist.rank
        for _ in range(skip):  # the draws of the batches trained on before an interruption
            torch.randint(len(self.unlabeled), (self.ratio * self.labeled.batch_size,), generator=self.generator)
        for images, labels in self._labeled(skip):
            idx = torch.randint(len(self.unlabeled), (self.ratio * self.labeled.batch_size,), generator=self.generator)
            if world > 1:
                idx = torch.tensor_split(idx, world)[rank]
            u = self.unlabeled[idx]
            views = {}
            for name, view in self.views.items():
                views[f"unlabeled_{name}"] = u if view is None else torch.stack([view(img) for img in u])
            yield Batch(images=images, labels=labels, views=views, extras={"unlabeled_index": idx, "labeled_index": self.labeled.last_index})

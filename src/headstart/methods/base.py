"""The method seam: what a training method is, and the batch it sees.

The loop (``engine/loop.py``) runs a :class:`TrainingMethod` and never knows which one. The base
class owns the mechanics every method shares — what DDP wraps, the validation sums and score,
the module that is saved, state in the checkpoint — and a method overrides ``step`` (and, where
it needs them, the hooks). Anchors: timm's ``TrainingTask`` (the trainable module apart from a
teacher, EMA after the optimizer step), pytorch-grad-cam's ``BaseCAM`` (the base owns the
mechanics), USB's algorithm base (named batch fields, hooks).

A method declares what it :class:`Needs`; the code that builds batch sources reads that (which
streams and views to draw, whether cached frozen features may stand in for images), the loop
never does. Its options are a frozen dataclass beside it (``Options``), set from the command
line as ``--method NAME -O key=value`` and from YAML/Python as ``method_options``.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError


@dataclass
class Batch:
    """One batch, by field name.

    ``images`` are the labeled images and ``labels`` their targets: class indices ``(N,)`` or
    soft targets ``(N, C)``. ``views`` holds any further image fields by name, e.g. the weak and
    strong views of the unlabeled images (``unlabeled_weak``, ``unlabeled_strong``). Images
    arrive as drawn (uint8 pixels or cached features) and the loop prepares every image field
    for the model; a method sees them prepared, on the device. ``extras`` holds per-image
    fields that are not images (e.g. ``unlabeled_index``, which pool images were drawn): moved
    to the device and split with the rest, never prepared.
    """

    images: torch.Tensor | None = None
    labels: torch.Tensor | None = None
    views: dict[str, torch.Tensor] = field(default_factory=dict)
    extras: dict[str, torch.Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        """The number of labeled images (or of the first view's, for a batch without labels)."""
        if self.images is not None:
            return len(self.images)
        if self.labels is not None:
            return len(self.labels)
        return len(next(iter(self.views.values()))) if self.views else 0

    def map_images(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> "Batch":
        """The batch with ``fn`` applied to every image field (labeled images and each view)."""
        return Batch(
            images=None if self.images is None else fn(self.images),
            labels=self.labels,
            views={k: fn(v) for k, v in self.views.items()},
            extras=self.extras,
        )

    def labels_to(self, device: torch.device) -> "Batch":
        """The batch with labels and extras on ``device``."""
        labels = None if self.labels is None else torch.as_tensor(self.labels).to(device, non_blocking=True)
        extras = {k: v.to(device, non_blocking=True) for k, v in self.extras.items()}
        return Batch(images=self.images, labels=labels, views=self.views, extras=extras)

    def split(self, pieces: int) -> list["Batch"]:
        """``pieces`` smaller batches that together hold every field (for running a batch that
        did not fit in memory in parts); each field is cut into the same number of parts."""
        if pieces <= 1:
            return [self]

        def cut(t: torch.Tensor | None) -> list[torch.Tensor | None]:
            return [None] * pieces if t is None else list(t.tensor_split(pieces))

        images, labels = cut(self.images), cut(self.labels)
        views = {k: cut(v) for k, v in self.views.items()}
        extras = {k: cut(v) for k, v in self.extras.items()}
        return [
            Batch(images=images[i], labels=labels[i], views={k: v[i] for k, v in views.items()}, extras={k: v[i] for k, v in extras.items()})
            for i in range(pieces)
        ]


def as_batch(raw: Any) -> Batch:
    """A batch source may yield :class:`Batch` or, for labeled images only, ``(images, labels)``."""
    if isinstance(raw, Batch):
        return raw
    images, labels = raw
    return Batch(images=images, labels=labels)


@dataclass(frozen=True)
class Needs:
    """What a method needs from the data, read where its batch sources are built.

    Attributes:
        labels: it trains on labeled images and their targets.
        unlabeled_views: names of the views drawn of each unlabeled image (e.g. ``("weak",
            "strong")``, given to the method as ``unlabeled_weak``/``unlabeled_strong``); empty:
            no unlabeled stream.
        unlabeled_ratio: unlabeled images per labeled image in a batch (FixMatch's μ).
        cached_features: a frozen body's features, computed once, may stand in for the images
            (only when the method never needs the pixels themselves).
    """

    labels: bool = True
    unlabeled_views: tuple[str, ...] = ()
    unlabeled_ratio: int = 0
    cached_features: bool = True


@dataclass(frozen=True)
class Setup:
    """What every method is built with, from the run: not options of one method but settings
    of the run (``TrainConfig``'s ``label_smoothing``, ``cutmix``/``mixup``)."""

    num_classes: int
    label_smoothing: float = 0.0
    mix: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None
    # the unlabeled pool (``--unlabeled``), for methods that learn from it
    pool_size: int = 0
    pool_targets: torch.Tensor | None = None  # (P, C) a teacher's class probabilities per pool image (``--teacher``)
    labeled_targets: torch.Tensor | None = None  # (N, C) the same for the plain labeled training images (distill's cached teacher)
    pool_truth: torch.Tensor | None = None  # (P,) hidden labels (-1: unknown), only to score pseudo-labels, never to train
    class_prior: torch.Tensor | None = None  # (C,) the labeled images' class shares
    teacher: nn.Module | None = None  # --method distill: the student's prepared input → the teacher's logits, student's class order


@dataclass(frozen=True)
class NoOptions:
    """A method without options of its own."""


class TrainingMethod:
    """Base of every training method: the mechanics are here, a method overrides ``step``.

    ``model`` is the module the method trains (the network, or only its head when training on
    cached features). The loop calls, in order: ``attach(net)`` with what DDP made of
    ``trainable()``; per optimizer step ``step(batch)`` (once per piece when a batch is split
    after running out of memory) and then ``after_step(step)`` once; per epoch ``eval_step``
    over the validation batches, whose sums it adds across processes before ``score``; at the
    end ``finish()``. ``state_dict``/``load_state_dict`` carry the method's own state (an EMA
    copy, counters) through the checkpoint.
    """

    Options: ClassVar[type] = NoOptions
    needs: ClassVar[Needs] = Needs()

    @classmethod
    def needs_for(cls, options: Any) -> Needs:
        """What the method needs with these options (a method whose views depend on its
        options overrides this); ``needs`` by default."""
        return cls.needs

    def __init__(self, model: nn.Module, options: Any = None, setup: Setup | None = None) -> None:
        self.model = model
        self.options = self.Options() if options is None else options
        self.setup = setup or Setup(num_classes=0)
        self.net: nn.Module = model  # what ``step`` calls: the trainable module, wrapped by DDP once attached

    # -- what trains ----------------------------------------------------------------------------
    def trainable(self) -> nn.Module:
        """What DDP wraps and the optimizer sees: never a teacher or an EMA copy."""
        return self.model

    def param_groups(self, lr: float, weight_decay: float) -> list[dict]:
        """Optimizer groups for modules the method owns besides the model (a projection head, a
        decoder); each parameter must be in exactly one group. None by default."""
        return []

    def attach(self, net: nn.Module) -> None:
        self.net = net

    # -- one step -------------------------------------------------------------------------------
    def step(self, batch: Batch) -> dict[str, torch.Tensor]:
        """The loss of one (prepared) batch and any other scalars to log, each a mean over the
        batch: ``{"loss": ..., "acc": ...}``. ``loss`` is required and must carry a gradient."""
        raise NotImplementedError

    def after_step(self, step: int) -> None:
        """Called once after every optimizer step (``step`` counts them from 1): EMA updates,
        threshold schedules."""

    def epoch_info(self) -> dict[str, Any]:
        """Values the method reports once per epoch beside the summed scalars (per-class
        thresholds, pool coverage): numbers or lists of numbers, kept in the epoch's row."""
        return {}

    # -- validation and what is kept ------------------------------------------------------------
    def eval_module(self) -> nn.Module:
        """The module that is validated and saved (an EMA copy, if the method keeps one)."""
        return self.model

    def eval_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Sums over one validation batch (added across batches and processes): by default the
        cross-entropy without smoothing, the correct predictions and the number of images."""
        logits = self.eval_module()(batch.images).float()
        labels = batch.labels
        return {
            "loss": F.cross_entropy(logits, labels, reduction="sum"),
            "correct": (logits.argmax(1) == labels).sum(),
            "count": torch.tensor(len(labels), device=logits.device),
        }

    def score(self, sums: dict[str, float]) -> dict[str, float]:
        """Validation scores from the summed ``eval_step`` values; the first key picks the best
        epoch (higher is better)."""
        n = max(1.0, sums["count"])
        return {"val_acc": sums["correct"] / n, "val_loss": sums["loss"] / n}

    def finish(self) -> None:
        """After training: when the kept module is not the trained one (EMA), its weights
        become the model's, so the run saves what was validated."""
        kept = self.eval_module()
        if kept is not self.model:
            self.model.load_state_dict(kept.state_dict())

    # -- checkpoint -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            raise ValueError(f"{type(self).__name__} keeps no state, but the checkpoint holds {sorted(state)}")


# -- options ----------------------------------------------------------------------------------


def option_help(options_type: type) -> list[tuple[str, Any, str]]:
    """``(name, default, one-line help)`` for each option of a method (help from the field's
    ``metadata["help"]``)."""
    rows = []
    for f in dataclasses.fields(options_type):
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None  # type: ignore[misc]
        )
        rows.append((f.name, default, str(f.metadata.get("help", ""))))
    return rows


def _convert(value: Any, kind: Any, name: str, method: str) -> Any:
    if not isinstance(value, str):
        return value
    text = value.strip()
    try:
        if kind is bool:
            low = text.lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        if kind is int:
            return int(text)
        if kind is float:
            return float(text)
    except ValueError:
        raise ConfigError(f"-O {name}={value}: --method {method} wants a {kind.__name__} for {name}") from None
    return text


def build_options(method: type, name: str, given: dict[str, Any] | None) -> Any:
    """The method's ``Options`` from ``key: value`` pairs (strings from ``-O key=value`` are
    converted to each field's type); an unknown key or a bad value is a clear error."""
    options_type = method.Options
    given = dict(given or {})
    known = {f.name for f in dataclasses.fields(options_type)}
    unknown = sorted(set(given) - known)
    if unknown:
        listed = ", ".join(f"{n} (default {d!r})" for n, d, _ in option_help(options_type)) or "none"
        raise ConfigError(
            f"--method {name} has no option {', '.join(unknown)}; its options: {listed} (`headstart list methods`)"
        )
    hints = typing.get_type_hints(options_type)
    values = {k: _convert(v, hints.get(k), k, name) for k, v in given.items()}
    try:
        return options_type(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"--method {name}: {exc}") from exc

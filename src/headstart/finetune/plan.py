"""Every default of a training run and its reason, decided in one pure function.

``plan(config, data, model)`` takes the run's configuration (with ``auto`` already resolved to a
strategy by the advisor), the facts of the data (labeled images per class, typical image side,
whether a separate validation set was given) and of the network (its stages, the size its
weights were trained at), and returns every value the run will use with a sentence for each
one that was decided rather than given. Nothing here reads files, draws random numbers or builds
a network, so it is tested over a grid of data facts (``tests/finetune/test_plan.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ..config import TrainConfig
from ..data.splits import train_count
from . import rules
from .strategies import STRATEGIES, StrategyInfo


@dataclass(frozen=True)
class DataFacts:
    """What the plan needs to know of the data.

    Attributes:
        class_counts: labeled images per class (after ``--labels-per-class``).
        typical_size: the images' side (native size of an array set; the median longer side
            of files), ``None`` when unknown.
        is_array: the set is an in-memory array (stored at native size, resized per batch).
    """

    class_counts: tuple[int, ...]
    typical_size: int | None
    is_array: bool = False


@dataclass(frozen=True)
class ModelFacts:
    num_stages: int
    stage_names: tuple[str, ...]
    weights_size: int


@dataclass(frozen=True)
class Plan:
    """The values a run uses; ``reasons`` explains each one that was decided."""

    strategy: StrategyInfo
    frozen: int
    image_size: int
    augment: Any
    augment_strength: float
    val_fraction: float
    num_train: int
    batch_size: int
    epochs: int
    lr: float
    backbone_lr_mult: float
    storage_size: int | None = None
    """The side files are decoded to and kept at; ``None`` for an array set (kept native,
    resized per batch)."""
    reasons: dict[str, str] = field(default_factory=dict)

    def resolved(self, config: TrainConfig) -> dict[str, Any]:
        """``config`` with every decided value filled in, as saved in ``config.yaml``."""
        out = config.with_updates(
            strategy=self.strategy.name, freeze_stages=self.frozen, image_size=self.image_size, epochs=self.epochs,
            batch_size=self.batch_size, lr=self.lr, augment=self.augment, augment_strength=self.augment_strength,
            val_fraction=self.val_fraction, backbone_lr_mult=self.backbone_lr_mult,
        ).to_dict()
        if not self.strategy.trains_head:
            out["epochs"] = 0  # nothing is trained
        return out


def plan(config: TrainConfig, data: DataFacts, model: ModelFacts) -> Plan:
    """Decide every value ``config`` leaves open (``None``), with its reason."""
    strategy = STRATEGIES.get(config.strategy)
    reasons: dict[str, str] = {}
    val_fraction = _val_fraction(config, data, reasons)
    num_train = train_count(data.class_counts, val_fraction) if not config.val else int(sum(data.class_counts))

    frozen = strategy.frozen_stages(model.num_stages, config.freeze_stages)
    if strategy.takes_freeze_depth and config.freeze_stages is None:
        reasons["freeze_stages"] = (
            f"first {frozen} of {model.num_stages} stages frozen: the generic early half "
            f"({', '.join(model.stage_names[:frozen])}) stays as pretrained"
        )
    image_size = config.image_size
    if image_size is None:
        typical = data.typical_size
        image_size = rules.default_image_size(native_size=typical, weights_size=model.weights_size, strategy=strategy.name)
        reasons["image_size"] = (
            f"{image_size}px: "
            + (f"native {typical}-px images{'' if data.is_array else ' (median side)'}, " if typical else "images of unknown size, ")
            + f"{'frozen features' if strategy.frozen_body else 'trainable layers'} "
            + (f"(an architecture built for {model.weights_size}-px inputs)" if model.weights_size <= rules.SMALL_INPUT
               else f"(weights trained at {model.weights_size}px)")
        )
    augment = config.augment
    if augment is None:
        augment = strategy.default_augment
        reasons["augment"] = (
            "none: the frozen body's features are computed once and cached"
            if augment == "none"
            else f"{augment} (crop + flip): trainable layers overfit a few hundred images without it"
        )
    batch_size = config.batch_size or rules.default_batch_size(num_train=num_train)
    epochs = config.epochs or rules.default_epochs(num_train=num_train, batch_size=batch_size, strategy=strategy.name)
    if config.epochs is None and strategy.trains_head:
        reasons["epochs"] = f"{epochs} epochs ≈ {epochs * math.ceil(num_train / batch_size)} steps for {num_train} images"
    return Plan(
        strategy=strategy,
        frozen=frozen,
        image_size=image_size,
        augment=augment,
        augment_strength=1.0 if config.augment_strength is None else config.augment_strength,
        val_fraction=val_fraction,
        num_train=num_train,
        batch_size=batch_size,
        epochs=epochs,
        lr=config.lr or rules.default_lr(strategy=strategy.name, batch_size=batch_size),
        backbone_lr_mult=rules.BACKBONE_LR_MULT if config.backbone_lr_mult is None else config.backbone_lr_mult,
        storage_size=None if data.is_array else image_size,
        reasons=reasons,
    )


def _val_fraction(config: TrainConfig, data: DataFacts, reasons: dict[str, str]) -> float:
    if config.val:
        reasons["val"] = f"validation on the separate set {config.val}"
        return 0.0
    if config.val_fraction is not None:
        return config.val_fraction
    smallest = int(min(data.class_counts))
    val_fraction = rules.default_val_fraction(smallest)
    reasons["val_fraction"] = f"smallest class has {smallest} labeled images: " + (
        "20% held out, stratified, to pick the best epoch"
        if val_fraction
        else f"fewer than {rules.MIN_PER_CLASS_FOR_VAL}, so no split — every label trains and the final epoch is kept"
    )
    return val_fraction

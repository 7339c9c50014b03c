"""Defaults as small pure functions of the data, each number with its reason.

These are the house rules a user can read and overrule; every value they produce is written
into the run's ``config.yaml`` next to what was asked for.
"""

from __future__ import annotations

import math

# The backbone learns at 1/10 of the head's rate (course notes 000, 001, 003): its weights are
# already good and large updates from a few hundred images would wash them out, while the new
# head starts from nothing.
BACKBONE_LR_MULT = 0.1

# Below this many labeled images per class a held-out validation split costs more than it
# tells: with 10 per class, 2 validation images per class measure accuracy in steps of 5
# points. Under it we train on every label and keep the final epoch (as BiT's few-shot
# protocol does) and say so.
MIN_PER_CLASS_FOR_VAL = 20


def default_val_fraction(min_class_count: int) -> float:
    """20 % of the labels for validation, or none when classes are too small to split."""
    return 0.2 if min_class_count >= MIN_PER_CLASS_FOR_VAL else 0.0


SMALL_INPUT = 64
"""Input side at or under which an architecture counts as built for small images."""


def default_image_size(*, native_size: int | None, weights_size: int, strategy: str) -> int:
    """Input side in pixels.

    Small native images (Fashion-MNIST's 28 px, digits' 8 px, a folder of 48-px icons — for
    files, the median longer side) are upsampled to 112 px: the
    ImageNet filters need the object to span enough of their receptive fields, and measured on
    Fashion-MNIST at 10 / 100 labels per class, fine-tuning at 112 px beat 64 px by 4 / 4.5
    points (partial) and 8 / 4.5 points (full) (benchmarks/results/strategies-*-gpu-*), and a
    linear probe scores 0.83 at 112 px vs 0.80 at 64 px. Going to 224 would cost 4x the CPU
    time again. Photos keep the size the weights were trained at when the body is frozen
    (features are computed once), and at most 160 px when layers train, where every epoch
    pays for the resolution (forward + backward is ~2x cheaper at 160 than at 224).
    An architecture built for small inputs (``weights_size`` ≤ 64, e.g. ``resnet_small`` at
    32 px) keeps its own size: it has no ImageNet filters to serve, and upsampling would only
    multiply its cost.
    """
    if weights_size <= SMALL_INPUT:
        return weights_size
    if native_size is not None and native_size <= 64:
        return 112
    if _strategy(strategy).frozen_body:
        return weights_size
    return min(weights_size, 160)


def default_epochs(*, num_train: int, batch_size: int, strategy: str) -> int:
    """Epochs so that training sees a sensible number of optimizer steps (~600).

    Measured on Fashion-MNIST at 100 labels per class, partial fine-tuning for ~780 steps
    scored 0.847 against 0.810 for ~310 steps; at 10 labels per class 420 steps beat 300 by
    one point. Bounded to 3..60 epochs for fine-tuning (more epochs over a few hundred images
    mostly memorise them) and up to 200 for a linear head on cached features, where an epoch
    costs almost nothing.
    """
    steps_per_epoch = max(1, math.ceil(num_train / batch_size))
    cap = _strategy(strategy).max_epochs
    return int(min(cap, max(3, math.ceil(600 / steps_per_epoch))))


def default_batch_size(*, num_train: int) -> int:
    """64, but never more than a quarter of the data, so even tiny sets take several steps."""
    return int(max(8, min(64, 2 ** math.floor(math.log2(max(8, num_train // 4))))))


def default_lr(*, strategy: str, batch_size: int) -> float:
    """Head learning rate for AdamW: 1e-3, with the body at 1e-4 (BACKBONE_LR_MULT).

    Adam's steps are already normalised per parameter, so the rate is not scaled with the
    batch size; 1e-3 trains a fresh linear head within a few hundred steps.
    """
    return 1e-3


def default_freeze_stages(*, num_stages: int) -> int:
    """For ``partial``: freeze the first half of the stages (rounded down).

    Early stages hold edges, colours and textures that transfer across domains; later stages
    hold ImageNet-specific parts. Halfway is the neutral default until the strategy advisor
    measures where transferable features stop.
    """
    return num_stages // 2


def knn_k_candidates(*, min_class_count: int) -> list[int]:
    """k values tried for the kNN baseline; never more neighbours than a class has images."""
    return [k for k in (1, 3, 5, 10, 20) if k <= max(1, min_class_count)] or [1]


def _strategy(name: str):
    from .strategies import STRATEGIES  # strategies builds on these rules

    return STRATEGIES.get(name)

"""The strategy advisor's decisions: small pure functions of the measurements.

Each function returns a value and the sentence that explains it. The thresholds are set from
measurements with EfficientNet-Lite0 (ImageNet weights), cross-validated probes on the labeled
images (``headstart advise``):

==========================  ============  ===========================  ====================
data                        BN KL (mean)  probe gain over random init  best probe stage
==========================  ============  ===========================  ====================
natural-photo crops         0.13          (task solved by colour)      blocks.5 (7 of 9)
desktop icons (drawings)    0.32          0.30                         blocks.5
Fashion-MNIST, 112 px       0.36          0.55 .. 0.76 (10 per class)  blocks.4 .. blocks.6
digits (8×8), 112 px        0.63          0.74 .. 0.76                 blocks.4 .. blocks.5
==========================  ============  ===========================  ====================

The course notes' 2×2 table (seed 004) is the frame: dataset size × similarity to the
pretraining domain → train the head only / the top stages / everything. These rules fill in
where the table's lines fall and add the cases it leaves out (no pretrained weights, one or two
labels per class).
"""

from __future__ import annotations

from dataclasses import dataclass

# -- size -------------------------------------------------------------------------------------
# Under 5 labeled images per class nothing trainable beyond a linear head is supported by the
# data: on Fashion-MNIST at 1 label/class the linear probe scored 0.514, partial fine-tuning
# 0.404 and full 0.387 (benchmarks/results/labels.md, 3 seeds); and a validation split or a
# probe with more than 4 folds is impossible there.
TINY_PER_CLASS = 5
# From 1,000 images per class, over-fitting stops being the main risk (the notes' "large"
# dataset: ImageNet itself has ~1,300 per class), so every layer may move.
LARGE_PER_CLASS = 1000

# -- similarity -------------------------------------------------------------------------------
# Mean KL between the data's per-channel activation statistics and the BatchNorm running
# statistics: natural photos sit at ~0.13 (table above), far domains at 0.3-0.6. Mapped
# linearly onto 1 (at or below KL_NEAR) .. 0 (at or above KL_FAR).
KL_NEAR, KL_FAR = 0.15, 0.5
# Similarity score at or above which the data counts as "similar" to the pretraining domain.
SIMILAR_AT = 0.6

# -- fine-tuning ------------------------------------------------------------------------------
# The body's learning rate as a fraction of the head's. Similar data: 1/10 (the notes' rule;
# the weights are already right and large steps from few images would wash them out).
# Different data: the same rate as the head — the body has to move to new features. Measured on
# Fashion-MNIST (benchmarks/results/strategies-fashion-mnist-blr1*.md vs labels.md, same seeds):
# at 10 labels/class (3 seeds) partial 0.739 → 0.771 and full 0.720 → 0.770, at 100 labels/class
# partial 0.851 → 0.874, when the body rate goes from 0.1 to 1.0 of the head's.
BODY_LR_SIMILAR, BODY_LR_DIFFERENT = 0.1, 1.0
# A stage counts as "already there" when its probe accuracy is within this share of the best
# stage's: the stages before the first such stage are kept frozen.
PROBE_TOLERANCE = 0.05


@dataclass(frozen=True)
class Choice:
    value: object
    reason: str


def size_band(min_per_class: int) -> Choice:
    """``tiny`` (< 5 per class), ``small`` or ``large`` (≥ 1,000 per class), by the smallest class."""
    if min_per_class < TINY_PER_CLASS:
        return Choice("tiny", f"smallest class has {min_per_class} labeled images (< {TINY_PER_CLASS}): too few to train any layer of the body")
    if min_per_class >= LARGE_PER_CLASS:
        return Choice("large", f"smallest class has {min_per_class} labeled images (≥ {LARGE_PER_CLASS}): enough to move every layer")
    return Choice("small", f"smallest class has {min_per_class} labeled images ({TINY_PER_CLASS}..{LARGE_PER_CLASS - 1}): few enough that over-fitting rules")


def bn_similarity(mean_kl: float | None) -> float | None:
    """1 when the data's activation statistics match the BatchNorm running statistics (photos),
    0 when they are as far off as 8×8 digits upsampled; ``None`` for networks without BatchNorm."""
    if mean_kl is None:
        return None
    return float(min(1.0, max(0.0, (KL_FAR - mean_kl) / (KL_FAR - KL_NEAR))))


def transfer_gain(pretrained_best: float | None, random_best: float | None) -> float | None:
    """Share of the error a random-init network's best probe leaves that the pretrained one's
    best probe removes: 0 = pretraining buys nothing on these images, 1 = it solves them."""
    if pretrained_best is None or random_best is None:
        return None
    if random_best >= 1.0:
        return 0.0
    return float(min(1.0, max(0.0, (pretrained_best - random_best) / (1.0 - random_best))))


def similarity(bn: float | None, gain: float | None) -> Choice:
    """The lower of the available signals (each in 0..1): data counts as similar only when
    every measurement says so. The two mistakes cost differently: calling different data
    similar freezes the body (Fashion-MNIST at 10 labels/class: linear probe 0.734 against
    0.78 for fine-tuning), while calling similar data different still fine-tunes from the
    same good features. ``None`` when neither signal could be measured."""
    parts = {name: v for name, v in (("BatchNorm statistics", bn), ("probe gain over random init", gain)) if v is not None}
    if not parts:
        return Choice(None, "similarity not measurable (no BatchNorm layers and too few labels per class for a probe)")
    score = min(parts.values())
    verdict = "similar to" if score >= SIMILAR_AT else "different from"
    made_of = ", ".join(f"{k} {v:.2f}" for k, v in parts.items())
    return Choice(score, f"similarity {score:.2f} (lowest of {made_of}; similar from {SIMILAR_AT}): {verdict} the pretraining images")


def freeze_from_probe(probe: list[float | None] | None, num_stages: int) -> Choice:
    """Leading stages to keep frozen: those before the first stage whose pooled features are
    within ``PROBE_TOLERANCE`` of the best stage's probe accuracy.

    The stages up to that point build features that serve these images about as well as they
    will get (generic, keep them); the stages after it are where transferable features stop
    — the probe flattens or falls — so they retrain. At least one stage trains and the stem
    stays frozen. Without a probe: the first half, as the fixed ``partial`` does.
    """
    half = num_stages // 2
    scores = [p for p in (probe or []) if p is not None]
    if not probe or len(scores) != len(probe):
        return Choice(half, f"no stage-wise probe (too few labels per class): the first half ({half} of {num_stages}) stays frozen")
    best = max(scores)
    first = next(i for i, p in enumerate(scores) if p >= best * (1 - PROBE_TOLERANCE))
    k = min(max(first, 1), num_stages - 1)
    return Choice(
        k,
        f"stage {first + 1} of {num_stages} already reaches {scores[first]:.2f}, within {PROBE_TOLERANCE:.0%} of the best "
        f"probe ({best:.2f} at stage {scores.index(best) + 1}): freeze the {k} stage(s) before it, retrain from there",
    )


def strategy(*, band: str, similar: bool | None, pretrained: bool) -> Choice:
    """The 2×2 table, with its two missing rows: random weights and tiny data."""
    if not pretrained:
        return Choice("full", "no pretrained weights: there is nothing to keep, so every layer trains")
    if band == "tiny":
        return Choice("linear", "tiny data: only a new linear head on the frozen body (2×2 table: small data, any similarity)")
    if similar is None:
        similar = False  # unmeasured: assume the harder case, which still trains the top of the body
    if band == "small":
        if similar:
            return Choice("linear", "small and similar (2×2 table, top-left): the pretrained features already fit; train the head only")
        return Choice("partial", "small and different (2×2 table, bottom-left): keep the generic early stages, retrain the later ones")
    if similar:
        return Choice("partial", "large and similar (2×2 table, top-right): fine-tune the top stages")
    return Choice("full", "large and different (2×2 table, bottom-right): fine-tune everything, starting from the pretrained weights")


def body_lr_mult(*, strategy_name: str, similar: bool | None, pretrained: bool) -> Choice:
    """Body learning rate as a fraction of the head's."""
    if strategy_name in ("linear", "knn"):
        return Choice(BODY_LR_SIMILAR, "body frozen: its rate does not matter")
    if not pretrained or not similar:
        why = "random weights" if not pretrained else "different data"
        return Choice(BODY_LR_DIFFERENT, f"{why}: the body learns at the head's rate, since its features must change")
    return Choice(BODY_LR_SIMILAR, "similar data: the body learns at 1/10 of the head's rate, so good features are not washed out")


def augment_strength(*, strategy_name: str, band: str, similarity_score: float | None) -> Choice:
    """Augmentation strength in 0..1 (0 = none): stronger for fewer images and more different
    data, since those over-fit most (the 2×2 table's "partial + heavy augmentation"); none when
    the body is frozen, because frozen features are computed once and cached."""
    if strategy_name in ("linear", "knn"):
        return Choice(0.0, "none: the frozen body's features are computed once and cached")
    s = 0.5 if similarity_score is None else similarity_score
    strength = round(min(1.0, max(0.2, (0.5 if band == "small" else 0.25) + 0.5 * (1 - s))), 2)
    return Choice(strength, f"{strength:.2f}: {band} data, similarity {s:.2f} — fewer and more different images need more")

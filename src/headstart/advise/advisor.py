"""Measure a labeled set against a backbone, decide how to transfer, and keep the evidence.

``measure`` runs the cheap measurements of ``measure.py`` (one forward pass of the pretrained
network, one of a randomly initialised copy, a cross-validated linear probe per stage) and
``decide`` turns them into a training recipe with the pure rules of ``rules.py``. The result,
an ``Advice``, holds both, prints as a table and is saved in every ``--strategy auto`` run.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from ..backbones import Backbone
from ..finetune import rules as finetune_rules
from . import rules
from .measure import probe_accuracy, size_stats, stage_pass

# Measurements use at most this many labeled images (the same share of every class): the probe
# ranks stages as well at 1,000 images as at 60,000, and 1,000 images cost two forward passes
# of ~10-30 s on 2 CPU cores.
MAX_IMAGES = 1000
ADVICE_VERSION = 1  # bump when a measurement or rule changes, so cached advice is recomputed


@dataclass
class Advice:
    """Evidence and decision. ``decision`` maps ``TrainConfig`` fields to values; ``reasons``
    has one sentence per decided field; ``candidates`` ranks alternatives for ``--search``."""

    backbone: str
    pretrained: bool
    image_size: int
    size: dict[str, Any]
    measured_on: int
    stage_names: list[str]
    probe: list[float | None] | None
    random_probe: list[float | None] | None
    bn_kl: list[float | None] | None
    signals: dict[str, float | None]
    decision: dict[str, Any]
    reasons: dict[str, str]
    candidates: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    version: int = ADVICE_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Advice":
        return cls(**d)

    def summary(self) -> str:
        d = self.decision
        return f"{describe(d)}, augment {d['augment']} (strength {d['augment_strength']:.2f})"


def describe(recipe: dict[str, Any]) -> str:
    """One line for a decision or a search candidate: strategy, frozen stages, body rate."""
    s = recipe["strategy"]
    if s == "partial":
        s += f" (first {recipe['freeze_stages']} stages frozen)"
    if recipe["strategy"] in ("partial", "full"):
        s += f", body lr ×{recipe['backbone_lr_mult']:g}"
    return s


def measure(
    model: Backbone,
    random_model: Backbone | None,
    images: torch.Tensor,
    labels: np.ndarray,
    classes: list[str],
    prepare: Callable[[torch.Tensor], torch.Tensor],
    *,
    seed: int = 0,
    all_labels: np.ndarray | None = None,
    log: Callable[[str], None] = lambda s: None,
) -> dict[str, Any]:
    """Every measurement the rules read, from ``images`` (uint8 N×3×H×W, at most
    ``MAX_IMAGES``: the caller samples with ``measure.subsample`` before decoding) and ``labels``.

    ``random_model`` is the same architecture with random weights (``None`` when ``model``
    itself is not pretrained: then there is nothing to compare). ``all_labels`` are the labels
    of the whole labeled set when ``images`` are a sample of it (class sizes come from them)."""
    stats = size_stats(labels if all_labels is None else all_labels, classes)
    x, y = images, np.asarray(labels)
    log(f"stage-wise probe on {len(y)} images ({model.name}, {'pretrained' if model.pretrained else 'random init'})")
    feats, kl_layers = stage_pass(model, x, prepare)
    probe = [probe_accuracy(f, y, seed=seed) for f in feats]
    random_probe = None
    if random_model is not None:
        log("same probe, random-init weights")
        rfeats, _ = stage_pass(random_model, x, prepare, batch_stats=True)
        random_probe = [probe_accuracy(f, y, seed=seed) for f in rfeats]
    bn_kl = None
    if kl_layers and model.pretrained:
        per_stage: dict[int, list[float]] = {}
        for name, value in kl_layers:
            per_stage.setdefault(int(name.split(".")[0]), []).append(value)
        bn_kl = [float(np.mean(per_stage[i])) if i in per_stage else None for i in range(model.num_stages)]
        bn_kl_mean = float(np.mean([v for _, v in kl_layers]))
    else:
        bn_kl_mean = None
    return {
        "size": stats.to_dict(),
        "measured_on": int(len(y)),
        "stage_names": list(model.stage_names),
        "probe": probe,
        "random_probe": random_probe,
        "bn_kl": bn_kl,
        "bn_kl_mean": bn_kl_mean,
        "pretrained": bool(model.pretrained),
    }


def _best(curve: list[float | None] | None) -> float | None:
    vals = [v for v in (curve or []) if v is not None]
    return max(vals) if vals else None


def decide(m: dict[str, Any], *, backbone: str, image_size: int, val_fraction: float | None = None) -> Advice:
    """The recipe for measurements ``m`` (from ``measure``): pure, so it is unit-tested on
    hand-written measurements."""
    n_stages = len(m["stage_names"])
    min_per_class = int(m["size"]["min_per_class"])
    band = rules.size_band(min_per_class)
    bn = rules.bn_similarity(m["bn_kl_mean"])
    gain = rules.transfer_gain(_best(m["probe"]), _best(m["random_probe"])) if m["pretrained"] else None
    sim = rules.similarity(bn, gain)
    similar = None if sim.value is None else sim.value >= rules.SIMILAR_AT
    strat = rules.strategy(band=band.value, similar=similar, pretrained=m["pretrained"])
    if strat.value == "partial":
        freeze = rules.freeze_from_probe(m["probe"], n_stages)
    elif strat.value == "full":
        freeze = rules.Choice(0, "full fine-tuning: nothing frozen")
    else:
        freeze = rules.Choice(n_stages, "linear probe: the whole body frozen")
    body = rules.body_lr_mult(strategy_name=strat.value, similar=similar, pretrained=m["pretrained"])
    aug = rules.augment_strength(strategy_name=strat.value, band=band.value, similarity_score=sim.value)
    # the schedule the trainer will use (finetune.rules), shown so the advice is the whole recipe
    if val_fraction is None:
        val_fraction = finetune_rules.default_val_fraction(min_per_class)
    num_train = int(round(m["size"]["total"] * (1 - val_fraction)))
    batch = finetune_rules.default_batch_size(num_train=num_train)
    epochs = finetune_rules.default_epochs(num_train=num_train, batch_size=batch, strategy=strat.value)
    lr = finetune_rules.default_lr(strategy=strat.value, batch_size=batch)
    steps = epochs * -(-num_train // batch)
    decision = {
        "strategy": strat.value,
        "freeze_stages": int(freeze.value),  # type: ignore[arg-type]
        "backbone_lr_mult": float(body.value),  # type: ignore[arg-type]
        "augment_strength": float(aug.value),  # type: ignore[arg-type]
        "augment": "none" if aug.value == 0 else "light",
        "lr": lr,
        "epochs": epochs,
        "batch_size": batch,
    }
    reasons = {
        "size": band.reason,
        "similarity": sim.reason,
        "strategy": strat.reason,
        "freeze_stages": freeze.reason,
        "backbone_lr_mult": body.reason,
        "augment": aug.reason + (
            "" if aug.value == 0 else
            "; applied as the `light` policy (crop + flip): on Fashion-MNIST the stronger policies measured no better "
            "(benchmarks/results/augment.md); run `headstart augment audit` to see which transforms keep the labels"
        ),
        "schedule": f"head lr {lr:g} (AdamW), batch {batch}, {epochs} epochs ≈ {steps} steps on {num_train} training images",
    }
    return Advice(
        backbone=backbone,
        pretrained=m["pretrained"],
        image_size=image_size,
        size=m["size"],
        measured_on=m["measured_on"],
        stage_names=m["stage_names"],
        probe=m["probe"],
        random_probe=m["random_probe"],
        bn_kl=m["bn_kl"],
        signals={"bn_kl_mean": m["bn_kl_mean"], "bn_similarity": bn, "transfer_gain": gain, "similarity": sim.value},
        decision=decision,
        reasons=reasons,
        candidates=candidates(decision, n_stages=n_stages, pretrained=m["pretrained"]),
    )


def candidates(decision: dict[str, Any], *, n_stages: int, pretrained: bool) -> list[dict[str, Any]]:
    """Up to three recipes for ``--search``, the rules' choice first: the runners-up are the
    neighbouring cells of the 2×2 table (one step more and one step less of the body trained).
    Each is a set of ``TrainConfig`` fields."""
    chosen = {k: decision[k] for k in ("strategy", "freeze_stages", "backbone_lr_mult", "augment")}
    linear = {"strategy": "linear", "freeze_stages": n_stages, "backbone_lr_mult": rules.BODY_LR_SIMILAR, "augment": "none"}
    half = n_stages // 2
    partial = {"strategy": "partial", "freeze_stages": half, "backbone_lr_mult": decision["backbone_lr_mult"], "augment": "light"}
    full = {"strategy": "full", "freeze_stages": 0, "backbone_lr_mult": rules.BODY_LR_DIFFERENT, "augment": "light"}
    if not pretrained:
        pool = [chosen]
    elif chosen["strategy"] == "linear":
        pool = [chosen, {**partial, "backbone_lr_mult": rules.BODY_LR_SIMILAR}, full]
    elif chosen["strategy"] == "partial":
        pool = [chosen, full, linear] if chosen["freeze_stages"] == half else [chosen, partial, full, linear]
    else:
        pool = [chosen, partial, linear]
    out: list[dict[str, Any]] = []
    for c in pool:
        if c not in out:
            out.append(c)
    return out[:3]

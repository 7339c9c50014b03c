"""The advisor as training uses it: measured once per (weights, images, size, seed) and cached,
and its decision applied to the fields the user left open."""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from ..backbones import BACKBONES, create_backbone
from ..config import TrainConfig
from ..console import console
from ..data import ImageSet, check_trainable, few_shot, resolve
from ..data.fingerprint import default_cache_dir, imageset_fingerprint
from ..data.notices import report_skipped
from ..data.tensors import images_tensor
from ..engine.cache import weights_fingerprint
from ..engine.prepare import Prepare, pick_device
from ..fileio import atomic_write
from ..finetune import rules
from .advisor import ADVICE_VERSION, MAX_IMAGES, Advice, decide, measure
from .measure import subsample


def advise_labeled(labeled: ImageSet, *, device: torch.device, **settings: Any) -> Advice:
    """Measure ``labeled`` against a backbone and decide (``measure_and_decide``), leaving the
    caller's random state as it was — building networks draws random numbers — so a run trains
    the same whether its advice was measured now or read from the cache."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        return measure_and_decide(labeled, device=device, **settings)


def measure_and_decide(
    labeled: ImageSet,
    *,
    native_size: int | None,
    backbone: str,
    weights: str,
    seed: int,
    device: torch.device,
    image_size: int | None,
    num_workers: int,
    use_cache: bool,
    val_fraction: float | None,
    backbone_from: str | None = None,
) -> Advice:
    """The advice for ``labeled``; cached on disk (keyed by the exact weights, the images and
    labels, the size and the seed), so ``advise`` followed by ``train --strategy auto``
    measures once."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = create_backbone(backbone, num_classes=len(labeled.classes), weights=None if weights == "none" else weights)
    if backbone_from:  # a pretext-trained body is measured like any backbone (its weights key the cache)
        from ..body import load_body_into

        load_body_into(model, backbone_from)
    size = image_size or rules.default_image_size(
        native_size=native_size, weights_size=model.preprocess.image_size, strategy="partial"
    )
    keep = subsample(labeled.labels, MAX_IMAGES, seed)
    cache_dir = default_cache_dir() if use_cache else None
    path = None
    if cache_dir is not None:
        key = hashlib.sha256(
            json.dumps(
                [ADVICE_VERSION, weights_fingerprint(model), imageset_fingerprint(labeled),
                 size, seed, MAX_IMAGES, val_fraction, str(device.type)]
            ).encode()
        ).hexdigest()[:40]
        path = cache_dir.parent / "advice" / f"{key}.json"
        if path.is_file():
            try:
                advice = Advice.from_dict(json.loads(path.read_text()))
                console.print(f"  [dim]advice: measured earlier, read from {path}[/dim]")
                return advice
            except (OSError, ValueError, TypeError):
                pass  # unreadable or older layout: measure again
    random_model = None
    if model.pretrained:
        torch.manual_seed(seed)  # the random-init reference is the same network every time
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            random_model = create_backbone(backbone, num_classes=len(labeled.classes), weights=None)
        random_model.to(device).to(memory_format=torch.channels_last)
    model.to(device).to(memory_format=torch.channels_last)
    sample = labeled.subset(keep)
    x = images_tensor(sample, size=None if sample.is_array else size, num_workers=num_workers)
    t0 = time.perf_counter()
    measured = measure(
        model, random_model, x, sample.labels, list(labeled.classes), Prepare(model.preprocess, size, device),
        seed=seed, all_labels=labeled.labels, log=lambda msg: console.print(f"  [dim]advise: {msg}[/dim]"),
    )
    advice = decide(measured, backbone=model.name, image_size=size, val_fraction=val_fraction)
    advice.seconds = time.perf_counter() - t0
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(advice.to_dict(), indent=2)))
    return advice


def apply_advice(config: TrainConfig, advice: Advice, choice: dict[str, Any] | None, reasons: dict[str, str]) -> TrainConfig:
    """Fill the fields the user left open with the advisor's decision (or a search's winner);
    what the user set explicitly stays."""
    decision = {**advice.decision, **(choice or {})}
    updates: dict[str, Any] = {"strategy": decision["strategy"]}
    reasons["advice"] = advice.reasons["strategy"] + " — " + advice.reasons["size"] + "; " + advice.reasons["similarity"]
    if choice:
        reasons["advice"] += f"; search chose {choice}"
    if config.freeze_stages is None and decision["strategy"] == "partial":
        updates["freeze_stages"] = int(decision["freeze_stages"])
        reasons["freeze_stages"] = advice.reasons["freeze_stages"]
    if config.backbone_lr_mult is None:
        updates["backbone_lr_mult"] = float(decision["backbone_lr_mult"])
        if decision["strategy"] in ("partial", "full"):
            reasons["backbone_lr_mult"] = advice.reasons["backbone_lr_mult"]
    if config.augment is None:
        updates["augment"] = decision["augment"]
        reasons["augment"] = advice.reasons["augment"]
    return config.with_updates(**updates)


def advice_for_run(
    config: TrainConfig, labeled: ImageSet, native_size: int | None, dist: Any, device: torch.device, saved: dict[str, Any] | None
) -> tuple[Advice, dict[str, Any] | None]:
    """The advice for a run, measured by rank 0 and shared with the group (``dist``); a resumed
    run passes the advice it started with (``saved``: its ``advice.json``), which comes back
    with the search's winner if it had one."""
    if saved is not None:
        d = {k: v for k, v in saved.items() if k not in ("search", "search_winner")}
        return Advice.from_dict(d), saved.get("search_winner")
    d = None
    if dist.is_main:
        d = advise_labeled(
            labeled, native_size=native_size, backbone=config.backbone, weights=config.weights, seed=config.seed,
            device=device, image_size=config.image_size, num_workers=config.num_workers, use_cache=config.feature_cache,
            val_fraction=0.0 if config.val else config.val_fraction, backbone_from=config.backbone_from,
        ).to_dict()
    return Advice.from_dict(dist.from_main(d)), None


def advise_data(
    data: str,
    *,
    backbone: str = "efficientnet_lite0",
    weights: str = "default",
    labels_per_class: int | None = None,
    seed: int = 0,
    device: str = "auto",
    image_size: int | None = None,
    val_fraction: float | None = None,
    num_workers: int = 2,
    on_bad_image: str = "skip",
    use_cache: bool = True,
) -> Advice:
    """Measure ``data`` (as ``train`` would read it) and return the advisor's recipe with its
    evidence: what ``train(TrainConfig(data, strategy="auto"))`` will do, and why
    (``headstart.advise``)."""
    BACKBONES.get(backbone)
    full = resolve(data, split="train", on_bad_image=on_bad_image)
    report_skipped(full)
    check_trainable(full)
    labeled = full if not labels_per_class else full.subset(few_shot(full.labels, labels_per_class, seed)[0])
    return advise_labeled(
        labeled, native_size=full.typical_size(), backbone=backbone, weights=weights, seed=seed, device=pick_device(device),
        image_size=image_size, num_workers=num_workers, use_cache=use_cache, val_fraction=val_fraction,
    )

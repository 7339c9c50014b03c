"""The Python API: train, evaluate and predict. Wiring only — each piece lives in its stage."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import os
import random
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from . import __version__
from .advise import ADVICE_VERSION, MAX_IMAGES, Advice, decide, describe, measure
from .advise.measure import subsample
from .advise.search import ROUNDS as SEARCH_ROUNDS
from .advise.search import successive_halving
from .augment import (
    BuiltPolicy,
    batch_mix,
    build_policy,
    contact_sheet,
    flagged_steps,
    parse_invariances,
    policy_steps,
    run_audit,
    tta_views,
    unsafe_magnitudes,
    write_sheet,
)
from .backbones import BACKBONES, Backbone, create_backbone
from .config import TrainConfig, load_yaml
from .data import (
    BUILTIN_DATASETS,
    IMAGE_EXTENSIONS,
    ImageSet,
    check_trainable,
    decode_file,
    few_shot,
    ignored_message,
    load_unlabeled,
    preload,
    resolve,
    stratified_split,
    to_square_uint8,
)
from .data.decode import MAX_PIXELS_ENV
from .engine import (
    Batches,
    FitResult,
    Prepare,
    cosine_schedule,
    distributed,
    extract_features,
    fit,
    pick_device,
    predict_logits,
)
from .engine.cache import (
    FeatureCache,
    default_cache_dir,
    imageset_fingerprint,
    weights_fingerprint,
)
from .engine.checkpoint import Checkpointer
from .engine.distributed import Distributed
from .engine.prepare import ToDevice
from .engine.progress import console
from .errors import ConfigError, DataError, HeadstartError, RunError
from .fileio import atomic_write
from .finetune import STRATEGIES, frozen_stages_for, param_groups, rules
from .finetune.knn import KNNHead
from .methods import Supervised
from .report import classification_metrics
from .runfolder import LoadedRun, clear_replaced_run, load_run, model_meta, save_run, write_json, write_yaml

log = logging.getLogger("headstart")

# Training images are decoded once into one uint8 tensor (no JPEG decoding per epoch), held in
# memory up to this size; a larger set is decoded into a memory-mapped file instead (kept in the
# cache folder, so the next run on the same files and size skips decoding too).
PRELOAD_BUDGET_BYTES = int(os.environ.get("HEADSTART_MEMORY_BUDGET_MB", 4096)) * 1024**2


@dataclass
class TrainResult:
    """What ``train`` produced: where the run is, and its headline numbers."""

    run_dir: Path
    val_accuracy: float | None
    best_epoch: int
    seconds: float
    resolved: dict[str, Any]
    history: list[dict] = field(default_factory=list)
    interrupted: bool = False


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _images_tensor(imageset: ImageSet, *, size: int | None, num_workers: int) -> torch.Tensor:
    """All images of a set as uint8 (N, 3, S, S): arrays at native size, files decoded once at
    ``size`` — into memory, or into a memory-mapped file when larger than the memory budget."""
    if imageset.is_array or len(imageset) * 3 * int(size or 0) ** 2 <= PRELOAD_BUDGET_BYTES:
        return preload(imageset, size=size, num_workers=num_workers)
    assert size is not None
    cache = default_cache_dir()
    folder = Path(tempfile.gettempdir()) if cache is None else cache.parent / "decoded"
    folder.mkdir(parents=True, exist_ok=True)
    # without a cache the file is this process's own, removed once mapped
    path = folder / f"{imageset_fingerprint(imageset)[:32]}-{size}px{'' if cache else f'-{os.getpid()}'}.u8"
    shape = (len(imageset), 3, size, size)
    if cache is not None and path.is_file() and path.stat().st_size == math.prod(shape):
        console.print(f"  [dim]{len(imageset)} images at {size}px: decoded earlier, mapped from {path}[/dim]")
        return torch.from_file(str(path), shared=False, size=math.prod(shape), dtype=torch.uint8).view(shape)
    console.print(
        f"  [dim]{len(imageset)} images at {size}px exceed the memory budget "
        f"({PRELOAD_BUDGET_BYTES / 1024**3:.1f} GiB, HEADSTART_MEMORY_BUDGET_MB): decoding into {path}[/dim]"
    )
    decoded: list[torch.Tensor] = []  # the mapping follows its file through the rename
    atomic_write(path, lambda tmp: decoded.append(preload(imageset, size=size, num_workers=num_workers, into=Path(tmp))))
    out = decoded[0]
    if cache is None:
        path.unlink(missing_ok=True)  # the mapping stays valid until the tensor is freed; nothing is left behind
    return out


def _align_classes(val: ImageSet, classes: list[str], source: str) -> ImageSet:
    """Re-index a separate validation set's labels onto the training classes."""
    unknown = sorted(set(val.classes) - set(classes))
    if unknown:
        raise DataError(f"validation data {source} has classes not in the training data: {unknown}")
    remap = np.array([classes.index(c) for c in val.classes], dtype=np.int64)
    return dataclasses.replace(val, labels=remap[val.labels], classes=list(classes))


def _report_skipped(imageset: ImageSet) -> None:
    """What loading left out or complained about: unreadable files (each with its reason), files
    that are not images (one line per folder), files that decoded with warnings (one line)."""
    if imageset.skipped:
        console.print(f"[yellow]skipped {len(imageset.skipped)} unreadable file(s):[/yellow]")
        for path, reason in imageset.skipped[:20]:
            console.print(f"  {path}: {reason}")
        if len(imageset.skipped) > 20:
            console.print(f"  ... and {len(imageset.skipped) - 20} more")
    report_ignored(imageset.ignored, imageset.root or imageset.name)
    report_warned(imageset.warned)


def report_ignored(paths: Sequence[str], where: str) -> None:
    line = ignored_message(paths, where)
    if line:
        console.print(f"[yellow]{line}[/yellow]")


def report_warned(warned: Sequence[tuple[str, str]]) -> None:
    if warned:
        path, text = warned[0]
        console.print(
            f"[yellow]{len(warned)} file(s) decoded despite warnings from the image decoder[/yellow] "
            f"(e.g. {path}: {text}); they are used as decoded"
        )


def train(config: TrainConfig) -> TrainResult:
    """Train a classifier as ``config`` says and write its run folder.

    Every value left as ``None`` in the config is decided by ``finetune.rules`` from the data;
    the decided values and their reasons are saved in ``config.yaml``.
    """
    t_start = time.perf_counter()
    picked = pick_device(config.device)
    dist = distributed.from_env(picked)
    try:
        device = distributed.device_for(dist, config.device, picked)
        if not config.resume:
            _refuse_finished(config)  # before a search spends minutes on trials
        with pixel_limit(config.max_image_pixels):
            if config.search and not config.resume:
                return _search_then_train(config, dist, device, t_start)
            return _train(config, dist, device, t_start)
    finally:
        distributed.shutdown(dist)


def _refuse_finished(config: TrainConfig) -> None:
    if (Path(config.output) / "model.json").exists() and not config.overwrite:
        raise HeadstartError(
            f"{config.output} already holds a finished run; choose another --output or pass --overwrite to replace it"
        )


@contextlib.contextmanager
def pixel_limit(max_pixels: int | None) -> Iterator[None]:
    """Decode with ``max_pixels`` as the decompression-bomb limit while the block runs (every
    decoding thread reads ``$HEADSTART_MAX_IMAGE_PIXELS``); ``None`` leaves the limit as it is."""
    if max_pixels is None:
        yield
        return
    saved = os.environ.get(MAX_PIXELS_ENV)
    os.environ[MAX_PIXELS_ENV] = str(int(max_pixels))
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(MAX_PIXELS_ENV, None)
        else:
            os.environ[MAX_PIXELS_ENV] = saved


def _train(
    config: TrainConfig,
    dist: Distributed,
    device: torch.device,
    t_start: float,
    *,
    advice: Advice | None = None,
    choice: dict[str, Any] | None = None,
    search_log: list[dict[str, Any]] | None = None,
) -> TrainResult:
    """One training run. With ``strategy='auto'`` the advisor's decision (``advice``, measured
    here unless given, or ``choice``, the winner of a search) fills every field the user left
    open."""
    if not dist.is_main:
        console.quiet = True  # one log for the group: rank 0's
    run_dir = Path(config.output)
    checkpointer = Checkpointer(run_dir / "checkpoint", every_steps=config.checkpoint_every)
    resume_state = None
    if config.resume:
        resume_state = checkpointer.load()
        if resume_state is None:
            raise RunError(
                f"nothing to resume in {run_dir}: it has no checkpoint (a run that finished removes its "
                "checkpoint, and knn runs have none); train again instead"
            )
    else:
        _refuse_finished(config)
    if config.strategy != AUTO and config.strategy not in STRATEGIES:  # fail before any data is read
        raise ConfigError(f"unknown strategy {config.strategy!r}; choose one of: {AUTO}, {', '.join(STRATEGIES.names())}")
    BACKBONES.get(config.backbone)
    policy_steps(config.augment, 1.0 if config.augment_strength is None else config.augment_strength)  # a bad policy fails here
    parse_invariances(config.invariances)
    batch_mix(num_classes=2, cutmix=config.cutmix, mixup=config.mixup)
    if config.on_bad_image not in ("skip", "error"):
        raise ConfigError(f"--on-bad-image must be 'skip' or 'error', not {config.on_bad_image!r}")
    seed_everything(config.seed)
    reasons: dict[str, str] = {}

    # -- data -------------------------------------------------------------------------------
    full = resolve(config.data, split="train", on_bad_image=config.on_bad_image)
    _report_skipped(full)
    check_trainable(full)
    classes = list(full.classes)
    labeled_idx = np.arange(len(full))
    pool_idx = np.array([], dtype=np.int64)
    if config.labels_per_class:
        labeled_idx, pool_idx = few_shot(full.labels, config.labels_per_class, config.seed)
    labeled = full.subset(labeled_idx)
    train_idx, val_idx = labeled_idx, np.array([], dtype=np.int64)
    counts = labeled.class_counts()
    requested = config.to_dict()
    if config.strategy != AUTO:
        advice = None
    elif advice is None:
        advice, saved_choice = _advice_for_run(config, full, labeled, dist, device, run_dir)
        choice = choice or saved_choice
    if advice is not None:
        config = _apply_advice(config, advice, choice, reasons)
    if config.backbone_lr_mult is None:
        config = config.with_updates(backbone_lr_mult=rules.BACKBONE_LR_MULT)
    unlabeled_count = None
    if config.unlabeled:
        pool = load_unlabeled(config.unlabeled, on_bad_image=config.on_bad_image)
        _report_skipped(pool)
        unlabeled_count = len(pool)
    if config.val:
        val_set: ImageSet | None = _align_classes(
            resolve(config.val, split="test", on_bad_image=config.on_bad_image), classes, config.val
        )
        train_set = labeled
        val_fraction = 0.0
        reasons["val"] = f"validation on the separate set {config.val}"
    else:
        val_fraction = config.val_fraction
        if val_fraction is None:
            val_fraction = rules.default_val_fraction(int(counts.min()))
            reasons["val_fraction"] = (
                f"smallest class has {int(counts.min())} labeled images: "
                + (
                    "20% held out, stratified, to pick the best epoch"
                    if val_fraction
                    else f"fewer than {rules.MIN_PER_CLASS_FOR_VAL}, so no split — every label trains and the final epoch is kept"
                )
            )
        if val_fraction > 0:
            tr, va = stratified_split(labeled.labels, val_fraction, config.seed)
            train_set, val_set = labeled.subset(tr), labeled.subset(va)
            train_idx, val_idx = labeled_idx[tr], labeled_idx[va]
        else:
            train_set, val_set = labeled, None
    num_classes = len(classes)

    # -- model and strategy -----------------------------------------------------------------
    weights = None if config.weights == "none" else config.weights
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = create_backbone(config.backbone, num_classes=num_classes, weights=weights, drop_rate=config.drop_rate)
    for w in caught:
        console.print(f"[bold red]warning:[/bold red] {w.message}")
    frozen = frozen_stages_for(config.strategy, num_stages=model.num_stages, freeze_stages=config.freeze_stages)
    if config.strategy == "partial" and config.freeze_stages is None:
        reasons["freeze_stages"] = (
            f"first {frozen} of {model.num_stages} stages frozen: the generic early half "
            f"({', '.join(model.stage_names[:frozen])}) stays as pretrained"
        )
    image_size = config.image_size
    if image_size is None:
        typical = full.typical_size()
        image_size = rules.default_image_size(
            native_size=typical, weights_size=model.preprocess.image_size, strategy=config.strategy
        )
        reasons["image_size"] = (
            f"{image_size}px: "
            + (f"native {typical}-px images{'' if full.is_array else ' (median side)'}, " if typical else "images of unknown size, ")
            + f"{'frozen features' if config.strategy in ('linear', 'knn') else 'trainable layers'} "
            f"(weights trained at {model.preprocess.image_size}px)"
        )
    augment = config.augment
    if augment is None:
        augment = "none" if config.strategy in ("linear", "knn") else "light"
        reasons["augment"] = (
            "none: the frozen body's features are computed once and cached"
            if augment == "none"
            else "light (crop + flip): trainable layers overfit a few hundred images without it"
        )
    strength = 1.0 if config.augment_strength is None else config.augment_strength
    invariances = parse_invariances(config.invariances, classes)
    storage = None if full.is_array else image_size
    policy = build_policy(augment, int(storage or full.images.shape[1]), strength=strength, invariances=invariances, classes=classes)
    mix = batch_mix(num_classes=num_classes, cutmix=config.cutmix, mixup=config.mixup)
    if config.strategy == "knn" and (policy.augmenter is not None or mix is not None):
        raise HeadstartError("--strategy knn memorises features as they are; use --augment none and no --cutmix/--mixup")
    if policy.augmenter is not None or mix is not None:
        reasons["augmentation"] = f"{policy.describe()}" + (f"; {mix.describe()}" if mix is not None else "")
    if policy.notes:
        reasons["invariances"] = f"declared {invariances.text!r}: " + "; ".join(policy.notes)  # type: ignore[union-attr]
    # frozen features are cached only when every image is seen as it is; random augmentation or
    # mixing through a frozen body computes its features at every step
    cached_features = config.strategy in ("knn", "linear") and policy.augmenter is None and mix is None
    if config.strategy == "linear" and not cached_features:
        reasons["features"] = "augmented images pass through the frozen body at every step (no feature cache: each draw differs)"
    audit_warnings = _audit_warnings(config.data, policy, int(storage or full.images.shape[1]))
    for w in audit_warnings:
        console.print(f"[bold red]warning:[/bold red] {w}")
    batch_size = config.batch_size or rules.default_batch_size(num_train=len(train_set))
    epochs = config.epochs or rules.default_epochs(num_train=len(train_set), batch_size=batch_size, strategy=config.strategy)
    if config.epochs is None and config.strategy != "knn":
        reasons["epochs"] = f"{epochs} epochs ≈ {epochs * math.ceil(len(train_set) / batch_size)} steps for {len(train_set)} images"
    lr = config.lr or rules.default_lr(strategy=config.strategy, batch_size=batch_size)
    model.to(device).to(memory_format=torch.channels_last)
    prepare = Prepare(model.preprocess, image_size, device)

    resolved = config.with_updates(
        strategy=config.strategy,
        freeze_stages=frozen,
        image_size=image_size,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        augment=augment,
        augment_strength=strength,
        val_fraction=val_fraction,
    ).to_dict()
    if config.strategy == "knn":
        resolved["epochs"] = 0  # nothing is trained
    resolved["device"] = str(device)
    resolved["processes"] = dist.world_size

    console.print(
        f"[bold]headstart train[/bold] {config.data}: {len(train_set)} training images"
        f"{f', {len(val_set)} validation' if val_set is not None else ''}, {num_classes} classes; "
        f"{config.backbone} ({'pretrained' if model.pretrained else 'RANDOM init'}), strategy {config.strategy}"
        f"{' (chosen by auto)' if advice is not None else ''}"
        f" ({frozen}/{model.num_stages} stages frozen), {image_size}px, device {device}"
        + (
            f", {dist.world_size} processes (DDP, {torch.distributed.get_backend()}; batch {batch_size} shared among them)"
            if dist.enabled
            else ""
        )
    )
    for key, why in reasons.items():
        console.print(f"  [dim]{key}: {why}[/dim]")

    # -- tensors ----------------------------------------------------------------------------
    train_x = _images_tensor(train_set, size=storage, num_workers=config.num_workers)
    train_y = torch.from_numpy(train_set.labels.astype(np.int64))
    val_batches = None
    if val_set is not None:
        val_x = _images_tensor(val_set, size=storage, num_workers=config.num_workers)
        val_y = torch.from_numpy(val_set.labels.astype(np.int64))
        val_batches = Batches(val_x, val_y, batch_size=256)

    if dist.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
    run_config = {
        "headstart_version": __version__, "requested": requested, "resolved": resolved, "reasons": reasons,
        "augmentation": {
            "policy": policy.name, "strength": strength, "applied": policy.describe(), "notes": policy.notes,
            "mix": None if mix is None else mix.describe(), "audit_warnings": audit_warnings,
        },
    }
    if config.resume:
        run_config = load_yaml(run_dir / "config.yaml")  # the run as first configured
        run_config.setdefault("resumed_at_steps", []).append(int(resume_state["step"]))  # type: ignore[index]
    elif dist.is_main:
        replaced = clear_replaced_run(run_dir)  # the old model's numbers, pictures, curves and audits
        if replaced:
            console.print(f"  [dim]replaced the earlier run in {run_dir} ({', '.join(replaced)})[/dim]")
        # written now, so a run killed before it finishes can still be resumed and explained
        write_yaml(run_dir / "config.yaml", run_config)
        if advice is not None:
            write_json(run_dir / "advice.json", {**advice.to_dict(), "search": search_log, "search_winner": choice})
        checkpointer.clear()  # a stale checkpoint of an earlier run must never be resumed into this one
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(run_dir / "tb")) if dist.is_main else None
    if dist.rank:
        # model and split are already the same everywhere; augmentation and dropout draws differ
        seed_everything(config.seed + dist.rank)
    history: list[dict] = []
    best_epoch = 0
    interrupted = False
    extra: dict[str, Any] = {}
    settings = dict(
        batch_size=batch_size, epochs=epochs, lr=lr, config=config, device=device, writer=writer,
        checkpointer=None if config.strategy == "knn" else checkpointer, resume=resume_state, dist=dist,
    )
    # each process validates its share of every batch during training; the final scores below
    # are rank 0's alone, on the whole set
    shared_val = None if val_batches is None else Batches(val_x, val_y, batch_size=256, dist=dist)
    try:
        if cached_features:
            model.freeze(model.num_stages)
            cache = FeatureCache(default_cache_dir() if config.feature_cache else None)

            def features(imageset: ImageSet, x: torch.Tensor, y: torch.Tensor, what: str) -> tuple[torch.Tensor, torch.Tensor]:
                key = cache.key_for(model=model, image_size=image_size, device=device, imageset=imageset)
                # rank 0 decides hit or miss for the group, so all processes take the same path
                hit = cache.get(key) if dist.is_main else None
                if dist.from_main(hit is not None):
                    hit = hit or cache.get(key)
                    if hit is not None:
                        console.print(f"  [dim]features ({what}): {len(hit[0])} from the cache[/dim]")
                        return hit
                # each process computes a contiguous share; the shares are gathered in order
                lo, hi = (len(x) * dist.rank) // dist.world_size, (len(x) * (dist.rank + 1)) // dist.world_size
                out = extract_features(
                    model, Batches(x[lo:hi], y[lo:hi], batch_size=128), prepare=prepare, device=device,
                    description=f"features ({what})", show_progress=config.progress,
                )
                if dist.enabled:
                    parts = dist.gather(out)
                    out = (torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]))
                if dist.is_main:
                    cache.put(key, *out)
                return out

            feats = features(train_set, train_x, train_y, "train")
            val_feats = None if val_set is None else features(val_set, val_x, val_y, "val")
            extra["feature_cache"] = {"hits": cache.hits, "misses": cache.misses}
            if config.strategy == "knn":
                k, chosen = _choose_k(*feats, val_feats, num_classes, config.knn_k, int(train_set.class_counts().min()))
                reasons["knn_k"] = chosen.pop("k_reason")
                extra.update(chosen)
                model.head = KNNHead(*feats, num_classes, k).to(device)
                resolved["knn_k"] = k
            else:
                fr = _train_head_on_features(model, feats, val_feats, **settings)
                history, best_epoch, interrupted = fr.history, fr.best_epoch, fr.interrupted
        else:
            train_batches = Batches(
                train_x, train_y, batch_size=batch_size, shuffle=True, seed=config.seed, augment=policy.augmenter, dist=dist
            )
            history, best_epoch, interrupted = _finetune(
                model, train_batches, shared_val, frozen=frozen, prepare=prepare, mix=mix, **settings
            )
    finally:
        if writer is not None:
            writer.flush()
    if not dist.is_main:
        return TrainResult(
            run_dir=run_dir, val_accuracy=None, best_epoch=best_epoch, seconds=time.perf_counter() - t_start,
            resolved=resolved, history=history, interrupted=interrupted,
        )

    # -- final validation and the run folder --------------------------------------------
    val_metrics = None
    if val_batches is not None:
        logits, labels = predict_logits(model, val_batches, prepare=prepare, device=device)
        val_metrics = classification_metrics(predictions=logits.argmax(1).numpy(), labels=labels.numpy(), classes=classes)
        writer.add_scalar("final/val_acc", val_metrics["accuracy"], best_epoch)
    writer.close()
    seconds = time.perf_counter() - t_start
    metrics = {
        "val": val_metrics,
        "best_epoch": best_epoch,
        "history": history,
        "seconds": seconds,
        "interrupted": interrupted,
        "num_train": len(train_set),
        "num_val": 0 if val_set is None else len(val_set),
        **extra,
    }
    model.eval()
    meta = model_meta(model, classes=classes, image_size=image_size, strategy=config.strategy)
    meta["trained_on"] = config.data
    save_run(
        run_dir,
        model=model,
        meta=meta,
        config=run_config,
        metrics=metrics,
        splits={
            "data": config.data,
            "seed": config.seed,
            "labels_per_class": config.labels_per_class,
            "labeled_indices": labeled_idx.tolist(),
            "train_indices": train_idx.tolist(),
            "val_indices": val_idx.tolist(),
            "val_data": config.val,
            "unlabeled_pool_size": int(len(pool_idx)),
            "unlabeled_folder": config.unlabeled,
            "unlabeled_folder_images": unlabeled_count,
            "skipped_files": [list(s) for s in full.skipped],
        },
    )
    if not interrupted:
        checkpointer.clear()  # the run is complete; a checkpoint would only invite a stale resume
    return TrainResult(
        run_dir=run_dir,
        val_accuracy=None if val_metrics is None else val_metrics["accuracy"],
        best_epoch=best_epoch,
        seconds=seconds,
        resolved=resolved,
        history=history,
        interrupted=interrupted,
    )


# -- augmentation: the label-safety audit and the preview -----------------------------------

AUDIT_FILE = "augment-audit.json"


def _audit_store(data: str) -> Path | None:
    """Where the latest audit of models trained on ``data`` is kept for ``train`` to read."""
    cache = default_cache_dir()
    if cache is None or not data:
        return None
    key = data if _is_builtin(data) else str(Path(data).resolve())
    return cache.parent / "audits" / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.json"


def _audit_warnings(data: str, policy: BuiltPolicy, size: int) -> list[str]:
    """One warning per step of ``policy`` that an earlier audit of a run on the same data flagged."""
    path = _audit_store(data)
    if path is None or not path.is_file():
        return []
    try:
        audit = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    bad = sorted(set(flagged_steps(policy.all_steps(), audit, size)))
    if not bad:
        return []
    return [
        f"the policy contains {', '.join(bad)}, which the label-safety audit of {audit.get('run', 'an earlier run')} flagged "
        f"(some class loses {audit['max_drop']:.0%}+ of its accuracy under it); the audit supports "
        f"--invariances {audit['recommended_invariances']!r}"
    ]


def _run_policy(run: LoadedRun, size: int) -> BuiltPolicy | None:
    """The augmentation policy a run trained with, rebuilt from its config."""
    cfg = load_yaml(run.path / "config.yaml") if (run.path / "config.yaml").is_file() else {}
    resolved = cfg.get("resolved") or {}
    if not resolved:
        return None
    return build_policy(
        resolved.get("augment") or "none", size, strength=float(resolved.get("augment_strength") or 1.0),
        invariances=parse_invariances(resolved.get("invariances"), run.classes), classes=run.classes,
    )


def augment_audit(
    run_dir: str | Path,
    data: str | None = None,
    *,
    per_class: int = 100,
    families: Sequence[str] | None = None,
    max_drop: float | None = None,
    device: str = "auto",
    seed: int = 0,
    on_bad_image: str = "skip",
) -> dict[str, Any]:
    """Apply each transform family at a few exact magnitudes to labeled images (default: the
    run's validation split, or the official test split of a built-in set) and report, per class,
    how the trained model's predictions change; written to ``<run>/augment-audit.json`` and kept
    where ``train`` on the same data finds it and warns about flagged transforms."""
    from .augment import MAX_DROP, audit_families

    predictor = Predictor(run_dir, device=device)
    run = predictor.run
    chosen = list(families) if families else audit_families()
    unknown = sorted(set(chosen) - set(audit_families()))
    if unknown:
        raise ConfigError(f"--families: {unknown} cannot be audited; choose from {', '.join(audit_families())}")
    if data is None:
        trained_on = run.meta.get("trained_on")
        splits = json.loads((run.path / "splits.json").read_text()) if (run.path / "splits.json").is_file() else {}
        data = "test" if trained_on and _is_builtin(trained_on) else ("val" if splits.get("val_indices") or splits.get("val_data") else None)
    imageset, name, caution = _eval_data(run, data, on_bad_image)
    _report_skipped(imageset)
    imageset = _align_classes(imageset, predictor.classes, name)
    rng = np.random.default_rng(seed)
    keep = [rng.permutation(np.flatnonzero(imageset.labels == c))[:per_class] for c in range(len(predictor.classes))]
    imageset = imageset.subset(np.sort(np.concatenate(keep)))
    images = _images_tensor(imageset, size=None if imageset.is_array else run.image_size, num_workers=2)
    console.print(
        f"[bold]augment audit[/bold] {run.path} on {name}: {len(imageset)} images, {len(chosen)} transform families"
        + (f" [yellow]({caution})[/yellow]" if caution else "")
    )
    t0 = time.perf_counter()
    result = run_audit(
        lambda x: predictor.proba_tensor(x).argmax(1), images, imageset.labels, list(predictor.classes),
        families=chosen, max_drop=MAX_DROP if max_drop is None else max_drop, log=lambda m: console.print(f"  {m}"),
    )
    result.update({"run": str(run.path), "data": name, "caution": caution, "seconds": time.perf_counter() - t0})
    policy = _run_policy(run, int(images.shape[-1]))
    if policy is not None:
        result["run_policy"] = policy.describe()
        result["run_policy_flagged"] = sorted(set(flagged_steps(policy.all_steps(), result, int(images.shape[-1]))))
    write_json(run.path / AUDIT_FILE, result)
    result["written_to"] = str(run.path / AUDIT_FILE)
    store = _audit_store(run.meta.get("trained_on") or "")
    if store is not None:
        store.parent.mkdir(parents=True, exist_ok=True)
        write_json(store, {k: v for k, v in result.items() if k != "written_to"})
    return result


def augment_preview(
    data: str,
    output: str | Path,
    *,
    policy: Any = "standard",
    strength: float = 1.0,
    invariances: Any = None,
    rows: int = 8,
    copies: int = 6,
    image_size: int | None = None,
    seed: int = 0,
    on_bad_image: str = "skip",
) -> Path:
    """A contact sheet (PNG) of ``rows`` images of ``data`` (one per class first), each original
    beside ``copies`` draws of the policy, exactly as training would apply it."""
    imageset = resolve(data, split="train", on_bad_image=on_bad_image)
    _report_skipped(imageset)
    check_trainable(imageset)
    rng = np.random.default_rng(seed)
    order = [rng.permutation(np.flatnonzero(imageset.labels == c)) for c in range(len(imageset.classes))]
    picks: list[int] = []
    depth = 0
    while len(picks) < rows and depth < max(len(o) for o in order):
        picks += [int(o[depth]) for o in order if depth < len(o)][: rows - len(picks)]
        depth += 1
    chosen = imageset.subset(np.array(picks))
    size = None if chosen.is_array else (image_size or 128)
    images = _images_tensor(chosen, size=size, num_workers=1)
    built = build_policy(
        policy, int(images.shape[-1]), strength=strength, invariances=parse_invariances(invariances, list(imageset.classes)),
        classes=list(imageset.classes),
    )
    torch.manual_seed(seed)
    sheet = contact_sheet(
        images, [imageset.classes[i] for i in chosen.labels], built.augmenter, [int(i) for i in chosen.labels],
        copies=copies, title=f"{data}: {built.describe()}",
    )
    return write_sheet(sheet, output)


# -- the strategy advisor ------------------------------------------------------------------

AUTO = "auto"  # --strategy auto: measure the data, let advise/rules.py choose


def _advise_labeled(labeled: ImageSet, *, device: torch.device, **settings: Any) -> Advice:
    """Measure ``labeled`` against a backbone and decide (``_measure_and_decide``), leaving the
    caller's random state as it was — building networks draws random numbers — so a run trains
    the same whether its advice was measured now or read from the cache."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        return _measure_and_decide(labeled, device=device, **settings)


def _measure_and_decide(
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
) -> Advice:
    """The advice for ``labeled``; cached on disk (keyed by the exact weights, the images and
    labels, the size and the seed), so ``advise`` followed by ``train --strategy auto``
    measures once."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = create_backbone(backbone, num_classes=len(labeled.classes), weights=None if weights == "none" else weights)
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
    x = _images_tensor(sample, size=None if sample.is_array else size, num_workers=num_workers)
    t0 = time.perf_counter()
    measured = measure(
        model, random_model, x, sample.labels, list(labeled.classes), Prepare(model.preprocess, size, device),
        seed=seed, all_labels=labeled.labels, log=lambda msg: console.print(f"  [dim]advise: {msg}[/dim]"),
    )
    advice = decide(measured, backbone=model.name, image_size=size, val_fraction=val_fraction)
    advice.seconds = time.perf_counter() - t0
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, advice.to_dict())
    return advice


def advise(
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
    evidence: what ``train(TrainConfig(data, strategy="auto"))`` will do, and why."""
    BACKBONES.get(backbone)
    full = resolve(data, split="train", on_bad_image=on_bad_image)
    _report_skipped(full)
    check_trainable(full)
    labeled = full if not labels_per_class else full.subset(few_shot(full.labels, labels_per_class, seed)[0])
    return _advise_labeled(
        labeled, native_size=full.typical_size(), backbone=backbone, weights=weights, seed=seed, device=pick_device(device),
        image_size=image_size, num_workers=num_workers, use_cache=use_cache, val_fraction=val_fraction,
    )


def _advice_for_run(
    config: TrainConfig, full: ImageSet, labeled: ImageSet, dist: Distributed, device: torch.device, run_dir: Path
) -> tuple[Advice, dict[str, Any] | None]:
    """The advice for this run, measured by rank 0 and shared with the group; a resumed run
    reads the advice it started with, and the search's winner if it had one."""
    saved = run_dir / "advice.json"
    if config.resume and saved.is_file():
        d = json.loads(saved.read_text())
        d.pop("search", None)
        return Advice.from_dict({k: v for k, v in d.items() if k != "search_winner"}), d.get("search_winner")
    d = None
    if dist.is_main:
        d = _advise_labeled(
            labeled, native_size=full.typical_size(), backbone=config.backbone, weights=config.weights, seed=config.seed,
            device=device, image_size=config.image_size, num_workers=config.num_workers, use_cache=config.feature_cache,
            val_fraction=0.0 if config.val else config.val_fraction,
        ).to_dict()
    return Advice.from_dict(dist.from_main(d)), None


def _apply_advice(config: TrainConfig, advice: Advice, choice: dict[str, Any] | None, reasons: dict[str, str]) -> TrainConfig:
    """Fill the fields the user left open with the advisor's decision (or a search's winner);
    what the user set explicitly stays."""
    decision = {**advice.decision, **(choice or {})}
    updates: dict[str, Any] = {"strategy": decision["strategy"]}
    console.print(f"  [bold]advice[/bold] ({advice.seconds:.0f} s of measurements): {advice.summary()}")
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


def _search_then_train(config: TrainConfig, dist: Distributed, device: torch.device, t_start: float) -> TrainResult:
    """``--search``: successive halving over the advisor's candidates on a validation split,
    then the winner trains in full as an ordinary ``auto`` run that records the search."""
    if config.strategy != AUTO:
        raise ConfigError("--search compares the advisor's candidates; use it with --strategy auto")
    if dist.enabled:
        raise ConfigError("--search trains its candidates in one process; drop --devices (or torchrun) for the search")
    advice = advise(
        config.data, backbone=config.backbone, weights=config.weights, labels_per_class=config.labels_per_class,
        seed=config.seed, device=str(device), image_size=config.image_size, num_workers=config.num_workers,
        on_bad_image=config.on_bad_image, use_cache=config.feature_cache,
        val_fraction=0.0 if config.val else config.val_fraction,
    )
    cands = advice.candidates
    min_count = int(advice.size["min_per_class"])
    if len(cands) < 2 or (config.val is None and min_count < 2):
        why = "only one candidate" if len(cands) < 2 else f"the smallest class has {min_count} labeled image(s): nothing to validate on"
        console.print(f"[yellow]--search skipped:[/yellow] {why}; training the advisor's choice")
        return _train(config, dist, device, t_start, advice=advice, search_log=[])
    # the search needs a validation split even where training alone would use every label
    val_fraction = config.val_fraction or (0.0 if config.val else 0.2)
    num_train = int(round(advice.size["total"] * (1 - val_fraction))) if not config.val else int(advice.size["total"])
    batch = config.batch_size or rules.default_batch_size(num_train=num_train)
    console.print(f"[bold]search[/bold]: {len(cands)} candidates, successive halving at {', '.join(f'{f:.0%}' for f in SEARCH_ROUNDS)} of their epochs")

    def score(cand: dict[str, Any], fraction: float) -> float:
        epochs = config.epochs or rules.default_epochs(num_train=num_train, batch_size=batch, strategy=cand["strategy"])
        trial_epochs = max(1, round(epochs * fraction))
        with tempfile.TemporaryDirectory() as tmp:
            trial = config.with_updates(
                output=tmp, search=False, progress=False, val_fraction=val_fraction, epochs=trial_epochs,
                **{k: v for k, v in cand.items() if k == "strategy" or getattr(config, k) is None},  # the user's settings stay
            )
            quiet, console.quiet = console.quiet, True
            try:
                result = _train(trial, dist, device, time.perf_counter())
            finally:
                console.quiet = quiet
        acc = float(result.val_accuracy or 0.0)
        console.print(f"  {describe(cand)}, {trial_epochs} epochs: validation accuracy {acc:.4f} ({result.seconds:.0f} s)")
        return acc

    winner, log = successive_halving(cands, score)
    console.print(f"  [bold]search winner[/bold]: {describe(winner)}")
    return _train(config, dist, device, t_start, advice=advice, choice=winner, search_log=log)


def _fit_phase(
    model: nn.Module,
    train_batches: Batches,
    val_batches: Batches | None,
    *,
    epochs: int,
    groups: list[dict],
    config: TrainConfig,
    prepare: Any,
    device: torch.device,
    writer: Any,
    tag: str,
    offset: int = 0,
    checkpointer: Checkpointer | None = None,
    resume: dict[str, Any] | None = None,
    phase_info: dict[str, Any] | None = None,
    dist: Distributed = distributed.SINGLE,
    mix: Any = None,
) -> FitResult:
    """One phase of training with its own AdamW and warm-up + cosine schedule (warm-up: the
    first epoch or 10 % of the steps, whichever is shorter); ``mix``: CutMix/MixUp per batch."""
    optimizer = torch.optim.AdamW(groups, lr=groups[0]["lr"])
    total = epochs * len(train_batches)
    mults = cosine_schedule(total_steps=total, warmup_steps=min(len(train_batches), total // 10))
    return fit(
        model=model,
        method=Supervised(label_smoothing=config.label_smoothing, mix=mix),
        train=train_batches,
        val=val_batches,
        epochs=epochs,
        optimizer=optimizer,
        lr_multipliers=mults,
        prepare=prepare,
        device=device,
        writer=writer,
        tag=tag,
        show_progress=config.progress,
        epoch_offset=offset,
        checkpoint=checkpointer,
        resume=resume if resume is not None and resume["tag"] == tag else None,
        phase_info=phase_info,
        dist=dist,
    )


def _train_head_on_features(
    model: Backbone,
    feats: tuple[torch.Tensor, torch.Tensor],
    val_feats: tuple[torch.Tensor, torch.Tensor] | None,
    *,
    batch_size: int,
    epochs: int,
    lr: float,
    config: TrainConfig,
    device: torch.device,
    writer: Any,
    checkpointer: Checkpointer | None = None,
    resume: dict[str, Any] | None = None,
    dist: Distributed = distributed.SINGLE,
) -> FitResult:
    """The linear probe: only the head trains, on features the frozen body produced once."""
    head = nn.Sequential(model.drop, model.head)
    return _fit_phase(
        head,
        Batches(*feats, batch_size=batch_size, shuffle=True, seed=config.seed, dist=dist),
        None if val_feats is None else Batches(*val_feats, batch_size=1024, dist=dist),
        epochs=epochs,
        groups=[{"name": "head", "params": list(model.head.parameters()), "lr": lr, "weight_decay": config.weight_decay}],
        config=config,
        prepare=ToDevice(device),
        device=device,
        writer=writer,
        tag="linear",
        checkpointer=checkpointer,
        resume=resume,
        dist=dist,
    )


def _finetune(
    model: Backbone,
    train_batches: Batches,
    val_batches: Batches | None,
    *,
    frozen: int,
    prepare: Prepare,
    batch_size: int,
    epochs: int,
    lr: float,
    config: TrainConfig,
    device: torch.device,
    writer: Any,
    checkpointer: Checkpointer | None = None,
    resume: dict[str, Any] | None = None,
    dist: Distributed = distributed.SINGLE,
    mix: Any = None,
) -> tuple[list[dict], int, bool]:
    """Optional head-only warm-up, then the first ``frozen`` stages stay frozen while the rest
    train at the discriminative rates of ``param_groups``. A resumed run skips a warm-up that
    its checkpoint shows was finished."""
    history: list[dict] = []
    common = dict(
        config=config, prepare=prepare, device=device, writer=writer, checkpointer=checkpointer, resume=resume, dist=dist, mix=mix
    )
    offset = 0
    in_main_phase = resume is not None and resume["tag"] == "train"
    if config.warmup_epochs > 0 and frozen < model.num_stages:
        offset = config.warmup_epochs
        if not in_main_phase:
            model.freeze(model.num_stages)
            fr = _fit_phase(
                model, train_batches, val_batches, epochs=config.warmup_epochs,
                groups=param_groups(model, lr=lr, weight_decay=config.weight_decay), tag="warmup", **common,
            )
            history += fr.history
            if fr.interrupted:
                model.freeze(frozen)
                return history, fr.best_epoch, True
    if in_main_phase:
        history = list(resume["info"].get("prior_history", []))  # type: ignore[index]
    model.freeze(frozen)
    groups = param_groups(
        model, lr=lr, backbone_lr_mult=config.backbone_lr_mult, stage_lr_decay=config.stage_lr_decay, weight_decay=config.weight_decay
    )
    fr = _fit_phase(
        model, train_batches, val_batches, epochs=epochs, groups=groups, tag="train", offset=offset,
        phase_info={"prior_history": history}, **common,
    )
    return history + fr.history, fr.best_epoch, fr.interrupted


def _choose_k(
    feats: torch.Tensor,
    labels: torch.Tensor,
    val_feats: tuple[torch.Tensor, torch.Tensor] | None,
    num_classes: int,
    k_given: int | None,
    min_count: int,
) -> tuple[int, dict[str, Any]]:
    """k for the kNN baseline: as given, else the best on validation, else 1 if classes are
    tiny (with 1-10 images per class, more neighbours mostly add votes from other classes)."""
    if k_given:
        return k_given, {"k_reason": f"k={k_given} as given"}
    candidates = rules.knn_k_candidates(min_class_count=min_count)
    if val_feats is None:
        k = min(5, candidates[-1])
        return k, {"k_reason": f"k={k}: no validation split to choose on; at most 5 and no more than the smallest class"}
    scores = {}
    for k in candidates:
        head = KNNHead(feats, labels, num_classes, k)
        scores[k] = float((head.votes(val_feats[0]).argmax(1) == val_feats[1]).float().mean())
    best = max(candidates, key=lambda k: (scores[k], -k))
    return best, {"k_reason": f"k={best}: best validation accuracy among {scores}", "knn_val_scores": scores}


# -- evaluation and prediction --------------------------------------------------------------


def gather_image_files(inputs: Sequence[str | Path], ignored: dict[str, list[str]] | None = None) -> list[Path]:
    """Image files named or found (recursively) in the folders given; other files found in a
    folder go to ``ignored[folder]``, to be reported as a count."""
    paths: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(q for q in p.rglob("*") if q.is_file() and not any(part.startswith(".") for part in q.relative_to(p).parts[:-1]))
            is_image = [q.suffix.lower() in IMAGE_EXTENSIONS and not q.name.startswith(".") for q in found]
            paths += [q for q, keep in zip(found, is_image) if keep]
            if ignored is not None:
                ignored[str(p)] = [str(q) for q, keep in zip(found, is_image) if not keep]
        elif p.exists():
            paths.append(p)
        else:
            raise DataError(f"{p} does not exist; give image files or folders of images")
    if not paths:
        others = "; ".join(m for m in (ignored_message(v, k) for k, v in (ignored or {}).items()) if m)
        raise DataError(
            f"no images found in {', '.join(map(str, inputs))} (looked for {', '.join(IMAGE_EXTENSIONS)})"
            + (f"; {others}" if others else "")
        )
    return paths


def load_square_files(
    paths: Iterable[str | Path], size: int, warned: list[tuple[str, str]] | None = None
) -> tuple[list[Path], torch.Tensor, list[tuple[str, str]]]:
    """Decode image files into uint8 (N, 3, size, size) the way training stored them (shorter
    side resized, centre crop); unreadable files come back as ``(path, reason)``, and files that
    decoded with warnings are added to ``warned``."""
    ok, arrays, bad = [], [], []
    for p in paths:
        try:
            decoded = decode_file(p)
            arrays.append(to_square_uint8(decoded.image, size))
            ok.append(Path(p))
            if decoded.warnings and warned is not None:
                warned.append((str(p), "; ".join(decoded.warnings)))
        except HeadstartError as exc:
            bad.append((str(p), str(getattr(exc, "reason", exc))))
    x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous() if arrays else torch.zeros(0, 3, size, size, dtype=torch.uint8)
    return ok, x, bad


class Predictor:
    """A loaded run, ready to score images (files, folders, arrays or an ImageSet)."""

    def __init__(self, run_dir: str | Path, *, device: str = "auto") -> None:
        self.device = pick_device(device)
        self.run: LoadedRun = load_run(run_dir, device=self.device)
        self.model: Backbone = self.run.model.to(memory_format=torch.channels_last)
        self.prepare = Prepare(self.run.preprocess, self.run.image_size, self.device)
        self.feature_cache: dict[str, int] | None = None

    @property
    def classes(self) -> list[str]:
        return self.run.classes

    def proba_tensor(self, images: torch.Tensor, *, batch_size: int = 64, views: Sequence[Any] | None = None) -> np.ndarray:
        """Probabilities for uint8 (N, 3, H, W) images; with ``views`` (test-time augmentation),
        the mean of the probabilities over the views."""
        per_view = self.proba_views(images, views or [None], batch_size=batch_size)
        return per_view[0] if len(per_view) == 1 else np.mean(per_view, axis=0)

    def proba_views(self, images: torch.Tensor, views: Sequence[Any], *, batch_size: int = 64) -> list[np.ndarray]:
        """Probabilities for each view (a uint8 → uint8 transform, applied batch by batch; None:
        the image itself)."""
        labels = torch.zeros(len(images), dtype=torch.long)
        out = []
        for view in views:
            prepare = self.prepare if view is None else (lambda x, v=view: self.prepare(v(x)))
            logits, _ = predict_logits(self.model, Batches(images, labels, batch_size=batch_size), prepare=prepare, device=self.device)
            out.append(logits.softmax(1).numpy())
        return out

    def tta_views(self, spec: str | None = None) -> tuple[list[Any], list[str]]:
        """The label-safe test-time views for this run: the defaults (or ``spec``) less those the
        run's declared invariances exclude or its label-safety audit flagged."""
        declared = None
        cfg_path = self.run.path / "config.yaml"
        if cfg_path.is_file():
            inv = parse_invariances((load_yaml(cfg_path).get("resolved") or {}).get("invariances"), self.classes)
            declared = None if inv is None else inv.default
        audit_path = self.run.path / AUDIT_FILE
        unsafe = unsafe_magnitudes(json.loads(audit_path.read_text())) if audit_path.is_file() else None
        return tta_views(spec, declared=declared, unsafe=unsafe)

    def images_of(self, imageset: ImageSet, *, num_workers: int = 2) -> torch.Tensor:
        return _images_tensor(imageset, size=None if imageset.is_array else self.run.image_size, num_workers=num_workers)

    @property
    def body_frozen(self) -> bool:
        """Whether the whole body is the pretrained one, untouched (linear probe, kNN): its
        features of an image are then those any such run computes, and can be shared."""
        return int(self.run.meta.get("frozen_stages", 0)) >= self.model.num_stages

    def proba_imageset(self, imageset: ImageSet, *, num_workers: int = 2, share_features: bool = False) -> np.ndarray:
        """Probabilities for every image of a set. With ``share_features`` (``evaluate``: test
        sets are scored again and again) and a frozen body, the pooled features go through the
        feature cache, so every linear-probe and kNN run on the same weights scores the same
        images with one pass of the network (the demo's kNN and linear runs, or one run evaluated
        twice); only the head runs for the others. Other callers (arrays handed to
        ``predict_proba``) leave the disk cache alone."""
        x = self.images_of(imageset, num_workers=num_workers)
        cache_dir = default_cache_dir()
        if not (share_features and self.body_frozen) or cache_dir is None:
            return self.proba_tensor(x)
        cache = FeatureCache(cache_dir)
        key = cache.key_for(model=self.model, image_size=self.run.image_size, device=self.device, imageset=imageset)
        hit = cache.get(key)
        if hit is None:
            labels = torch.from_numpy(imageset.labels.astype(np.int64))
            feats, _ = extract_features(
                self.model, Batches(x, labels, batch_size=64), prepare=self.prepare, device=self.device,
                description="features", show_progress=False,
            )
            cache.put(key, feats, labels)
        else:
            feats = hit[0]
        self.feature_cache = {"hits": cache.hits, "misses": cache.misses}
        self.model.eval()
        outs = []
        with torch.inference_mode():
            for chunk in feats.split(4096):
                outs.append(self.model.forward_head(chunk.to(self.device)).float().softmax(1).cpu())
        return torch.cat(outs).numpy()

    def proba_files(
        self, paths: Iterable[str | Path], *, views: Sequence[Any] | None = None, warned: list[tuple[str, str]] | None = None
    ) -> tuple[list[Path], np.ndarray, list[tuple[str, str]]]:
        """Probabilities for image files; unreadable files are returned with their reason (and
        files that decoded with warnings added to ``warned``)."""
        ok, x, bad = load_square_files(paths, self.run.image_size, warned)
        if not ok:
            return ok, np.zeros((0, len(self.classes))), bad
        return ok, self.proba_tensor(x, views=views), bad


SPLIT_WORDS = ("test", "train", "val")


def _eval_data(run: LoadedRun, data: str | None, on_bad_image: str) -> tuple[ImageSet, str, str | None]:
    """The labeled images ``eval`` scores, their name, and a caution when they are not unseen.

    ``data`` is a folder, CSV or built-in set; or one of ``test`` (the built-in's official test
    split: the default for built-in sets), ``train`` / ``val`` (the run's own training and
    validation images, rebuilt from ``splits.json``). Default for a folder: the folder.
    """
    trained_on = run.meta.get("trained_on")
    if data is None:
        data = "test" if trained_on and _is_builtin(trained_on) else trained_on
    if data is None:
        raise DataError("give the data to evaluate on (a folder, a CSV or a built-in set name)")
    if data not in SPLIT_WORDS:
        caution = None
        if data == trained_on and not _is_builtin(data):
            caution = "these are the training images (plus any validation split): accuracy here is optimistic"
        return resolve(data, split="test", on_bad_image=on_bad_image), data, caution
    if data == "test":
        if not (trained_on and _is_builtin(trained_on)):
            raise DataError(f"'test' names the official test split of a built-in set; {run.path} was trained on {trained_on}: give a folder or CSV of test images")
        return resolve(trained_on, split="test", on_bad_image=on_bad_image), f"{trained_on} (test split)", None
    splits_path = run.path / "splits.json"
    if not splits_path.is_file():
        raise RunError(f"{splits_path} is missing, so the run's {data} split cannot be rebuilt")
    splits = json.loads(splits_path.read_text())
    if data == "val" and splits.get("val_data"):
        return resolve(splits["val_data"], split="test", on_bad_image=on_bad_image), splits["val_data"], None
    idx = np.asarray(splits[f"{data}_indices"], dtype=np.int64)
    if len(idx) == 0:
        raise DataError(f"{run.path} has no {data} split (it trained on every labeled image)")
    full = resolve(splits["data"], split="train", on_bad_image=on_bad_image)
    caution = "these images trained the model: accuracy here is optimistic" if data == "train" else None
    return full.subset(idx), f"{splits['data']} ({data} split)", caution


def _is_builtin(spec: str) -> bool:
    return spec.split(":", 1)[0] in BUILTIN_DATASETS


def evaluate(
    run_dir: str | Path,
    data: str | None = None,
    *,
    device: str = "auto",
    on_bad_image: str = "skip",
    tta: bool = False,
    tta_views: str | None = None,
) -> dict[str, Any]:
    """Score a run on labeled data and write ``eval-<name>.json`` into the run folder.

    ``data`` defaults to the official test split for a run trained on a built-in set (never
    its training images), and to the training folder or CSV otherwise (with a caution that the
    number is optimistic); ``train``/``val``/``test`` pick a split by name. With ``tta`` the
    metrics are those of the probabilities averaged over the label-safe views, and ``tta``
    holds the accuracy without them and of every view alone (same images).
    """
    predictor = Predictor(run_dir, device=device)
    imageset, name, caution = _eval_data(predictor.run, data, on_bad_image)
    _report_skipped(imageset)
    imageset = _align_classes(imageset, predictor.classes, name)
    t0 = time.perf_counter()
    tta_info = None
    if tta:
        views, left_out = predictor.tta_views(tta_views)
        per_view = predictor.proba_views(predictor.images_of(imageset), views)
        probs = np.mean(per_view, axis=0)
        tta_info = {
            "views": [v.name for v in views],
            "left_out": left_out,
            "accuracy": float((probs.argmax(1) == imageset.labels).mean()),
            "accuracy_without_tta": float((per_view[0].argmax(1) == imageset.labels).mean()),
            "accuracy_per_view": {v.name: float((p.argmax(1) == imageset.labels).mean()) for v, p in zip(views, per_view)},
        }
    else:
        probs = predictor.proba_imageset(imageset, share_features=True)
    metrics = classification_metrics(predictions=probs.argmax(1), labels=imageset.labels, classes=predictor.classes)
    metrics.update(
        {"data": name, "caution": caution, "seconds": time.perf_counter() - t0, "skipped_files": [list(s) for s in imageset.skipped],
         "tta": tta_info, "feature_cache": predictor.feature_cache}
    )
    key = data if data in SPLIT_WORDS or data is None else (Path(data).name or data)
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(key or "test")) + ("-tta" if tta else "")
    target = Path(run_dir) / f"eval-{safe}.json"
    write_json(target, metrics)
    metrics["written_to"] = str(target)
    return metrics


def predict(
    run_dir: str | Path,
    inputs: Sequence[str | Path],
    *,
    top_k: int = 3,
    device: str = "auto",
    tta: bool = False,
    tta_views: str | None = None,
) -> dict[str, Any]:
    """Top-k classes with probabilities for each image file (folders are searched); with
    ``tta``, probabilities averaged over the run's label-safe test-time views."""
    predictor = Predictor(run_dir, device=device)
    ignored: dict[str, list[str]] = {}
    paths = gather_image_files(inputs, ignored)
    for folder, files in ignored.items():
        report_ignored(files, folder)
    views, left_out = predictor.tta_views(tta_views) if tta else (None, [])
    warned: list[tuple[str, str]] = []
    ok, probs, bad = predictor.proba_files(paths, views=views, warned=warned)
    report_warned(warned)
    k = min(top_k, len(predictor.classes))
    rows = []
    for p, pr in zip(ok, probs):
        top = np.argsort(pr)[::-1][:k]
        rows.append({"path": str(p), "top": [{"class": predictor.classes[i], "probability": float(pr[i])} for i in top]})
    out: dict[str, Any] = {
        "predictions": rows,
        "skipped": [{"path": p, "reason": r} for p, r in bad],
        "ignored": {folder: files for folder, files in ignored.items() if files},
        "decoder_warnings": [{"path": p, "warnings": w} for p, w in warned],
    }
    if tta:
        out["tta"] = {"views": [v.name for v in views or []], "left_out": left_out}
    return out


class ImageClassifier:
    """Estimator-style wrapper: ``fit`` trains a run, ``predict``/``predict_proba`` use it.

    Follows scikit-learn's contract: ``__init__`` only stores keyword arguments (any
    ``TrainConfig`` field); learned state ends in ``_`` (``classes_``, ``run_dir_``,
    ``result_``).
    """

    def __init__(self, **params: Any) -> None:
        self.params = params

    def fit(self, data: str, output: str | None = None) -> "ImageClassifier":
        cfg = TrainConfig(data=str(data), **({"output": output} if output else {}), **self.params)
        self.result_ = train(cfg)
        self.run_dir_ = self.result_.run_dir
        self.predictor_ = Predictor(self.run_dir_, device=cfg.device)
        self.classes_ = list(self.predictor_.classes)
        return self

    @classmethod
    def load(cls, run_dir: str | Path, *, device: str = "auto") -> "ImageClassifier":
        est = cls()
        est.run_dir_ = Path(run_dir)
        est.predictor_ = Predictor(run_dir, device=device)
        est.classes_ = list(est.predictor_.classes)
        return est

    def predict_proba(self, images: Any) -> np.ndarray:
        """Probabilities (N, classes) for file paths, an ImageSet, or a uint8 array
        (N, H, W) / (N, H, W, 3)."""
        if isinstance(images, ImageSet):
            return self.predictor_.proba_imageset(images)
        if isinstance(images, np.ndarray):
            return self.predictor_.proba_imageset(
                ImageSet(images=images.astype(np.uint8), labels=np.full(len(images), -1), classes=[], name="array", skipped=[])
            )
        ok, probs, bad = self.predictor_.proba_files(gather_image_files([images] if isinstance(images, (str, Path)) else images))
        if bad:
            raise DataError("cannot read: " + "; ".join(f"{p}: {r}" for p, r in bad))
        return probs

    def predict(self, images: Any) -> list[str]:
        return [self.classes_[i] for i in self.predict_proba(images).argmax(1)]


def fit_classifier(data: str, **params: Any) -> ImageClassifier:
    """``headstart.fit(data, strategy="partial", output="runs/a", ...)``: train and return the
    fitted estimator."""
    output = params.pop("output", None)
    return ImageClassifier(**params).fit(data, output=output)

"""The Python API: train, advise, evaluate and predict. Wiring only — each piece lives in its stage.

``train`` reads the data (``data/``), asks the advisor when the strategy is ``auto``
(``advise/``), builds the network (``backbones/``), lets ``finetune.plan`` decide every open
value with its reason, builds the augmentation (``augment/``) and the method (``methods/``), and
has ``engine/`` run the recipe's phases (``finetune.recipe``) into the run folder
(``runfolder``). Loading a finished run is ``predictor.Predictor``; the augmentation API is in
``api_augment``, the explanation API in ``api_explain``, the estimator in ``estimator``.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .advise import Advice
from .advise.cached import advice_for_run, apply_advice
from .advise.cached import advise_data as advise
from .advise.search import search_then_train
from .api_augment import augment_audit, augment_preview
from .api_distill import distill
from .api_ensemble import build_ensemble, train_members
from .api_predict import evaluate, predict
from .api_semi import labeled_targets, pool_epochs, read_unlabeled, selftrain, teacher_targets
from .augment import batch_mix, build_policy, parse_invariances, policy_steps
from .augment.policies import view_augmenter
from .augment.store import audit_warnings
from .backbones import BACKBONES, create_backbone
from .config import TrainConfig
from .console import console
from .data import ImageSet
from .data.decode import DEFAULT_MAX_PIXELS, MAX_PIXELS_ENV, pixel_limit
from .data.files import gather_image_files, load_square_files
from .data.labeled import TrainingData, read_training_data, splits_record
from .data.notices import report_ignored, report_warned
from .data.tensors import images_tensor
from .engine import Batches, Context, Prepare, WithUnlabeled, cached_features, distributed, pick_device, predict_logits, run_phases
from .engine.cache import FeatureCache, default_cache_dir
from .engine.checkpoint import seed_everything
from .engine.distributed import Distributed
from .engine.prepare import ToDevice
from .errors import ConfigError, HeadstartError, RunError
from .estimator import ImageClassifier, fit_classifier
from .finetune import STRATEGIES
from .finetune.knn import KNNHead, choose_k
from .finetune.plan import DataFacts, ModelFacts, Plan, plan
from .finetune.recipe import fine_tune_phases, probe_module, probe_phases
from .methods import METHODS, Setup, TrainingMethod, build_options, create_method
from .predictor import Predictor
from .report import classification_metrics
from .runfolder import TrainingFolder, load_run_weights, model_meta, open_for_training, read_advice, refuse_finished, write_json
from .semi.pool import POOL, Pool
from .semi.teacher import check_teachers
from .version import __version__

AUTO = "auto"  # --strategy auto: measure the data, let advise/rules.py choose

# What the command line uses besides the calls below (it imports only the API, the config and the
# registry index): the one console, the errors it reports, constants it shows in help texts.
__cli__ = (console, HeadstartError, RunError, DEFAULT_MAX_PIXELS, MAX_PIXELS_ENV, write_json, policy_steps, create_backbone)
__all__ = [
    "ImageClassifier", "Predictor", "TrainResult", "advise", "augment_audit", "augment_preview", "distill", "ensemble", "evaluate", "fit_classifier",
    "gather_image_files", "load_square_files", "pixel_limit", "predict", "report_ignored", "report_warned", "selftrain", "train",
]


def run_demo(*args: Any, **kwargs: Any) -> Any:
    """``headstart demo`` (see ``headstart.demo``)."""
    from .demo import run_demo as demo

    return demo(*args, **kwargs)


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


def train(config: TrainConfig) -> TrainResult:
    """Train a classifier as ``config`` says and write its run folder.

    Every value left as ``None`` in the config is decided by ``finetune.plan`` from the data;
    the decided values and their reasons are saved in ``config.yaml``.
    """
    t_start = time.perf_counter()
    picked = pick_device(config.device)
    dist = distributed.from_env(picked)
    try:
        device = distributed.device_for(dist, config.device, picked)
        if not config.resume:
            refuse_finished(config.output, config.overwrite)  # before a search spends minutes on trials
        with pixel_limit(config.max_image_pixels):
            if config.method == AUTO and config.unlabeled:
                from .api_semi import self_training

                if config.teachers is not None and config.teachers < 1:
                    raise ConfigError(f"--teachers {config.teachers}: give at least 1")

                def one(cfg: TrainConfig, **kw: Any) -> TrainResult:
                    if cfg.search and not cfg.resume and cfg.method == "supervised":  # the teacher's recipe may be searched
                        return _search_then_train(cfg, dist, device, time.perf_counter())
                    return _train(cfg, dist, device, time.perf_counter(), **kw)

                return self_training(config, one, t_start, agree=dist.from_main, is_main=dist.is_main)
            if config.method == AUTO:
                config = config.with_updates(method="supervised")
            if config.search and not config.resume:
                return _search_then_train(config, dist, device, t_start)
            return _train(config, dist, device, t_start)
    finally:
        distributed.shutdown(dist)


def _wants_advice(config: TrainConfig) -> bool:
    """``auto``: the advisor chooses; any other name must be a registered strategy."""
    name = config.strategy
    if name != AUTO and name not in STRATEGIES:
        raise ConfigError(f"unknown strategy {name!r}; choose one of: {AUTO}, {', '.join(STRATEGIES.names())}")
    return name == AUTO


def _check(config: TrainConfig) -> tuple[bool, Any]:
    """Fail on a bad name or option before any data is read; whether the advisor decides, and
    the method's options."""
    auto = _wants_advice(config)
    BACKBONES.get(config.backbone)
    options = build_options(METHODS.get(config.method), config.method, config.method_options)
    policy_steps(config.augment, 1.0 if config.augment_strength is None else config.augment_strength)
    parse_invariances(config.invariances)
    batch_mix(num_classes=2, cutmix=config.cutmix, mixup=config.mixup)
    if config.on_bad_image not in ("skip", "error"):
        raise ConfigError(f"--on-bad-image must be 'skip' or 'error', not {config.on_bad_image!r}")
    needs = METHODS.get(config.method).needs_for(options)
    if needs.unlabeled_views and not config.unlabeled:
        raise ConfigError(
            f"--method {config.method} learns from unlabeled images: give --unlabeled DIR (a folder of images), or "
            "--unlabeled pool with --labels-per-class K"
        )
    if config.unlabeled == POOL and not config.labels_per_class:
        raise ConfigError("--unlabeled pool is what --labels-per-class K leaves unlabeled of the training split; give --labels-per-class K")
    if config.teacher and config.method not in ("pseudolabel", "distill"):
        raise ConfigError(f"--teacher teaches --method pseudolabel (fixed targets) or distill, not --method {config.method}")
    if config.method == "distill" and (not config.teacher or config.teacher == "propagate"):
        raise ConfigError("--method distill learns from a teacher run: give --teacher RUN (or use `headstart distill TEACHER_RUN`)")
    if config.teacher and config.method == "pseudolabel" and (options.thresholds != "fixed" or options.ema_decay):
        raise ConfigError("with --teacher the targets are a fixed table: -O thresholds=flexmatch/freematch and ema_decay are "
                          "for the online method (drop --teacher, or those options)")
    if config.method == "pseudolabel" and getattr(options, "table", "head") == "graph" and (not config.teacher or config.teacher == "propagate"):
        raise ConfigError("-O table=graph spreads the labels over a --teacher run's own features: give --teacher RUN (--teacher "
                          "propagate spreads them over the pretrained body's features; drop -O table for it)")
    if config.teacher:
        check_teachers(config.teacher)
    if config.teachers is not None:  # the self-training route takes it off the configurations it trains
        raise ConfigError("--teachers N is how many teachers --method auto trains for its unlabeled images; give it with "
                          "--unlabeled (and no other --method), or drop it")
    if needs.unlabeled_views and (config.cutmix or config.mixup):
        raise ConfigError(f"--method {config.method} does not mix batches; drop --cutmix/--mixup")
    return auto, options


def _model(config: TrainConfig, num_classes: int):
    if config.backbone_from and (config.init_from or config.weights != "default"):
        raise ConfigError("--backbone-from gives the backbone's weights; drop " + ("--init-from" if config.init_from else "--weights"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = create_backbone(
            config.backbone, num_classes=num_classes, weights=None if config.weights == "none" else config.weights, drop_rate=config.drop_rate,
            drop_path_rate=config.drop_path_rate,
        )
    for w in caught:
        console.print(f"[bold red]warning:[/bold red] {w.message}")
    if config.init_from:
        load_run_weights(model, config.init_from, config.backbone)
    if config.backbone_from:
        from .body import load_body_into

        load_body_into(model, config.backbone_from)
    return model


@dataclass
class _Job:
    """One training run's pieces, passed between the steps of ``_train``."""

    config: TrainConfig
    dist: Distributed
    device: torch.device
    folder: TrainingFolder
    data: TrainingData
    plan: Plan
    model: Any
    reasons: dict[str, str]
    resolved: dict[str, Any]
    setup: Setup
    options: Any = None
    pool: Pool | None = None
    t_start: float = 0.0
    pool_steps: int = 0  # with an unlabeled stream: steps per epoch and epochs (``_pool_epochs``)
    pool_epochs: int = 0
    policy: Any = None
    invariances: Any = None
    extra: dict[str, Any] = field(default_factory=dict)
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    writer: Any = None

    @property
    def classes(self) -> list[str]:
        return list(self.data.full.classes)

    @property
    def needs(self) -> Any:
        """What the run's method declares it needs (``methods.base.Needs``)."""
        return METHODS.get(self.config.method).needs_for(self.options)

    def run_setup(self, mix: Any = None) -> Setup:
        """What the method is built with: the run's settings and, with --unlabeled, the pool's."""
        counts = self.data.train_set.class_counts() if self.data.train_set is not None else self.data.labeled.class_counts()
        pool = self.pool
        return Setup(
            len(self.classes), self.config.label_smoothing, mix,
            pool_size=0 if pool is None else len(pool),
            pool_truth=None if pool is None or not pool.has_truth else torch.from_numpy(pool.truth),
            class_prior=torch.from_numpy(counts.astype(np.float32) / max(1, counts.sum())),
            pool_targets=self.setup.pool_targets if self.setup is not None else None,
            teacher=self.setup.teacher if self.setup is not None else None,
        )

    def context(self) -> Context:
        knn = self.plan.strategy.knn_finish
        return Context(
            device=self.device, prepare=Prepare(self.model.preprocess, self.plan.image_size, self.device), dist=self.dist,
            writer=self.writer, checkpoint=None if knn else self.folder.checkpointer, resume=self.folder.resume_state,
            show_progress=self.config.progress,
            deadline=None if self.config.time_budget is None else self.t_start + 60.0 * self.config.time_budget,
        )


def _train(
    config: TrainConfig,
    dist: Distributed,
    device: torch.device,
    t_start: float,
    *,
    advice: Advice | None = None,
    choice: dict[str, Any] | None = None,
    search_log: list[dict[str, Any]] | None = None,
    notes: dict[str, str] | None = None,
) -> TrainResult:
    """One training run. With ``strategy='auto'`` the advisor's decision (``advice``, measured
    here unless given, or ``choice``, the winner of a search) fills every field the user left
    open."""
    if not dist.is_main:
        console.quiet = True  # one log for the group: rank 0's
    if config.method == AUTO:
        config = config.with_updates(method="supervised")
    folder = open_for_training(config.output, resume=config.resume, overwrite=config.overwrite, checkpoint_every=config.checkpoint_every)
    auto, options = _check(config)
    seed_everything(config.seed)
    data = read_training_data(config)
    requested = config.to_dict()
    reasons: dict[str, str] = dict(notes or {})
    if not auto:
        advice = None
    elif advice is None:
        saved = read_advice(folder.path) if config.resume else None
        advice, saved_choice = advice_for_run(config, data.labeled, data.full.typical_size(), dist, device, saved)
        choice = choice or saved_choice
    if advice is not None:
        console.print(f"  [bold]advice[/bold] ({advice.seconds:.0f} s of measurements): {advice.summary()}")
        config = apply_advice(config, advice, choice, reasons)
    model = _model(config, len(data.full.classes))
    counts = tuple(int(c) for c in data.labeled.class_counts())
    decided = plan(
        config, DataFacts(counts, data.full.typical_size(), data.full.is_array),
        ModelFacts(model.num_stages, tuple(model.stage_names), model.preprocess.image_size),
    )
    reasons.update(decided.reasons)
    data.split(config, decided.val_fraction)
    resolved = {
        **decided.resolved(config), "method_options": dataclasses.asdict(options), "device": str(device), "processes": dist.world_size,
    }
    job = _Job(config, dist, device, folder, data, decided, model, reasons, resolved, None, options, t_start=t_start)  # type: ignore[arg-type]
    if config.unlabeled:
        read_unlabeled(job)
    job.setup = job.run_setup()
    if job.needs.unlabeled_views:
        job.pool_steps, job.pool_epochs = pool_epochs(job)
    audit = _augmentation(job)
    model.to(device).to(memory_format=torch.channels_last)
    _announce(job, advice is not None)
    job.tensors = _tensors(job)
    run_config = folder.start_config({
        "headstart_version": __version__, "requested": requested, "resolved": resolved, "reasons": reasons,
        "augmentation": {
            "policy": job.policy.name, "strength": decided.augment_strength, "applied": job.policy.describe(), "notes": job.policy.notes,
            "mix": None if job.setup.mix is None else job.setup.mix.describe(), "audit_warnings": audit,
        },
    })
    if dist.is_main and not config.resume:
        replaced = folder.write_start(run_config, None if advice is None else {**advice.to_dict(), "search": search_log, "search_winner": choice})
        if replaced:
            console.print(f"  [dim]replaced the earlier run in {folder.path} ({', '.join(replaced)})[/dim]")
    if config.teacher and (config.method != "distill" or (options.cached_teacher and job.needs.unlabeled_views)):
        teacher_targets(job, lambda: _model(config, len(job.classes)))
        if config.method == "distill":
            labeled_targets(job)
    if config.method == "distill":
        from .api_distill import teacher_module

        job.setup = dataclasses.replace(job.setup, teacher=teacher_module(config.teacher, model.preprocess, job.classes, device))
    from torch.utils.tensorboard import SummaryWriter

    job.writer = SummaryWriter(str(folder.path / "tb")) if dist.is_main else None
    if dist.rank:
        # model and split are already the same everywhere; augmentation and dropout draws differ
        seed_everything(config.seed + dist.rank)
    try:
        out = _fit_on_features(job) if _uses_cached_features(job) else _fit_on_images(job)
    finally:
        if job.writer is not None:
            job.writer.flush()
    return _finish(job, out, run_config, t_start)


def _augmentation(job: _Job) -> list[str]:
    """The run's policy and batch mix (into ``job``), with their reasons; the label-safety
    audit's warnings about the policy."""
    config, p, classes = job.config, job.plan, job.classes
    side = int(p.storage_size or job.data.full.images.shape[1])
    invariances = parse_invariances(config.invariances, classes)
    policy = build_policy(p.augment, side, strength=p.augment_strength, invariances=invariances, classes=classes)
    mix = batch_mix(num_classes=len(classes), cutmix=config.cutmix, mixup=config.mixup)
    if p.strategy.knn_finish and (policy.augmenter is not None or mix is not None):
        raise HeadstartError(f"--strategy {p.strategy.name} memorises features as they are; use --augment none and no --cutmix/--mixup")
    if policy.augmenter is not None or mix is not None:
        job.reasons["augmentation"] = f"{policy.describe()}" + (f"; {mix.describe()}" if mix is not None else "")
    if policy.notes:
        job.reasons["invariances"] = f"declared {invariances.text!r}: " + "; ".join(policy.notes)  # type: ignore[union-attr]
    job.policy, job.invariances = policy, invariances
    job.setup = job.run_setup(mix)
    if p.strategy.frozen_body and p.strategy.trains_head and not _uses_cached_features(job):
        job.reasons["features"] = (
            "augmented images pass through the frozen body at every step (no feature cache: each draw differs)"
            if job.needs.cached_features and all(v == "plain" for v in job.needs.unlabeled_views)
            else f"--method {config.method} needs the images themselves at every step (no feature cache)"
        )
    warned = audit_warnings(config.data, policy, side)
    for w in warned:
        console.print(f"[bold red]warning:[/bold red] {w}")
    return warned


def _uses_cached_features(job: _Job) -> bool:
    """Frozen features are cached only when every image is seen as it is (random augmentation
    or mixing through a frozen body computes its features at every step) and the method
    allows it."""
    needs = job.needs
    return (
        job.plan.strategy.frozen_body and job.policy.augmenter is None and job.setup.mix is None
        and needs.cached_features and all(v == "plain" for v in needs.unlabeled_views)
    )


def _origin(model: Any, config: TrainConfig) -> str:
    """Where the network's starting weights come from, for the run's first line."""
    if config.backbone_from:
        return f"body {config.backbone_from}"
    if model.pretrained:
        return "pretrained"
    if config.init_from:
        return f"weights of {config.init_from}"
    return "from scratch, by design" if BACKBONES.get(config.backbone).from_scratch else "RANDOM init"


def _announce(job: _Job, advised: bool) -> None:
    config, p, data, dist, model = job.config, job.plan, job.data, job.dist, job.model
    val = f", {len(data.val_set)} validation" if data.val_set is not None else ""
    console.print(
        f"[bold]headstart train[/bold] {config.data}: {len(data.train_set)} training images{val}, {len(job.classes)} classes; "
        f"{config.backbone} ({_origin(model, config)}), strategy {p.strategy.name}"
        f"{' (chosen by auto)' if advised else ''}"
        + (f", method {config.method}" if config.method != "supervised" else "")
        + f" ({p.frozen}/{model.num_stages} stages frozen), {p.image_size}px, device {job.device}"
        + (
            f", {dist.world_size} processes (DDP, {torch.distributed.get_backend()}; batch {p.batch_size} shared among them)"
            if dist.enabled else ""
        )
    )
    for key, why in job.reasons.items():
        console.print(f"  [dim]{key}: {why}[/dim]")


def _tensors(job: _Job) -> dict[str, torch.Tensor]:
    """The training and validation images as uint8 tensors (and the unlabeled pool's, when the
    method learns from it), with their labels."""
    size, workers, data = job.plan.storage_size, job.config.num_workers, job.data
    out = {
        "train_x": images_tensor(data.train_set, size=size, num_workers=workers),
        "train_y": torch.from_numpy(data.train_set.labels.astype(np.int64)),
    }
    if data.val_set is not None:
        out["val_x"] = images_tensor(data.val_set, size=size, num_workers=workers)
        out["val_y"] = torch.from_numpy(data.val_set.labels.astype(np.int64))
    if data.unlabeled is not None and (job.needs.unlabeled_views or job.config.teacher):  # files of any size: at the run's input size
        pool_size = size if size is not None or data.unlabeled.is_array else job.plan.image_size
        out["unlabeled_x"] = images_tensor(data.unlabeled, size=pool_size, num_workers=workers)
    return out


def _fit_on_features(job: _Job):
    """Linear probe or kNN: the frozen body's features computed once (or read from the cache);
    a probe trains the head on them, kNN memorises them."""
    config, p, model, t = job.config, job.plan, job.model, job.tensors
    ctx = job.context()
    model.freeze(model.num_stages)
    cache = FeatureCache(default_cache_dir() if config.feature_cache else None)

    def features(imageset: ImageSet, x: torch.Tensor, y: torch.Tensor, what: str) -> tuple[torch.Tensor, torch.Tensor]:
        return cached_features(
            model, imageset, x, y, cache=cache, image_size=p.image_size, prepare=ctx.prepare, device=job.device, dist=job.dist,
            what=what, show_progress=config.progress,
        )

    feats = features(job.data.train_set, t["train_x"], t["train_y"], "train")
    val_feats = None if job.data.val_set is None else features(job.data.val_set, t["val_x"], t["val_y"], "val")
    pool_feats = None
    if job.needs.unlabeled_views:
        pool_x = t["unlabeled_x"]
        pool_feats = features(job.data.unlabeled, pool_x, torch.zeros(len(pool_x), dtype=torch.long), "unlabeled")[0]
    job.extra["feature_cache"] = {"hits": cache.hits, "misses": cache.misses}
    if p.strategy.knn_finish:
        k, chosen = choose_k(*feats, val_feats, len(job.classes), config.knn_k, int(job.data.train_set.class_counts().min()))
        job.reasons["knn_k"] = chosen.pop("k_reason")
        job.extra.update(chosen)
        model.head = KNNHead(*feats, len(job.classes), k).to(job.device)
        job.resolved["knn_k"] = k
        return None
    method = create_method(config.method, probe_module(model), config.method_options, job.setup)
    train: Any = Batches(*feats, batch_size=p.batch_size, shuffle=True, seed=config.seed, dist=job.dist)
    epochs = p.epochs
    if pool_feats is not None:
        steps, epochs = job.pool_steps, job.pool_epochs
        train = WithUnlabeled(
            train, pool_feats, ratio=job.needs.unlabeled_ratio or 1, views=dict.fromkeys(job.needs.unlabeled_views), seed=config.seed,
            steps=steps,
        )
    return run_phases(
        probe_phases(model, epochs=epochs, lr=p.lr, weight_decay=config.weight_decay), method,
        train,
        None if val_feats is None else Batches(*val_feats, batch_size=1024, dist=job.dist),
        dataclasses.replace(ctx, prepare=ToDevice(job.device)),
    )


def _fit_on_images(job: _Job):
    """Fine-tuning (or a probe through augmentation): the recipe's phases over the images; a
    method that learns from unlabeled images gets its views of the pool in every batch."""
    config, p, model, t = job.config, job.plan, job.model, job.tensors
    method: TrainingMethod = create_method(config.method, model, config.method_options, job.setup)
    train: Any = Batches(t["train_x"], t["train_y"], batch_size=p.batch_size, shuffle=True, seed=config.seed, augment=job.policy.augmenter, dist=job.dist)
    needs, epochs = job.needs, p.epochs
    if needs.unlabeled_views:
        side = int(t["unlabeled_x"].shape[-1])
        views = {
            name: view_augmenter(name, side, strength=p.augment_strength, invariances=job.invariances, classes=job.classes)
            for name in needs.unlabeled_views
        }
        epochs = job.pool_epochs
        train = WithUnlabeled(train, t["unlabeled_x"], ratio=needs.unlabeled_ratio or 1, views=views, seed=config.seed, steps=job.pool_steps)
    # each process validates its share of every batch; the final scores are rank 0's, on the whole set
    val = None if "val_x" not in t else Batches(t["val_x"], t["val_y"], batch_size=256, dist=job.dist)
    phases = fine_tune_phases(
        model, frozen=p.frozen, epochs=epochs, lr=p.lr, warmup_epochs=config.warmup_epochs, backbone_lr_mult=p.backbone_lr_mult,
        stage_lr_decay=config.stage_lr_decay, weight_decay=config.weight_decay,
    )
    out = run_phases(phases, method, train, val, job.context())
    model.freeze(p.frozen)
    return out


def _finish(job: _Job, out: Any, run_config: dict[str, Any], t_start: float) -> TrainResult:
    """Rank 0 scores the whole validation set and writes the run folder."""
    config, data, model, p = job.config, job.data, job.model, job.plan
    history, best_epoch, interrupted = ([], 0, False) if out is None else (out.history, out.best_epoch, out.interrupted)
    if out is not None:
        job.extra.update(fit_seconds=out.seconds, stopped_at=out.stopped_at)
        if config.time_budget is not None:
            job.extra["time_budget_minutes"] = config.time_budget
    if not job.dist.is_main:
        return TrainResult(job.folder.path, None, best_epoch, time.perf_counter() - t_start, job.resolved, history, interrupted)
    val_metrics = None
    if data.val_set is not None:
        val = Batches(job.tensors["val_x"], job.tensors["val_y"], batch_size=256)
        logits, labels = predict_logits(model, val, prepare=Prepare(model.preprocess, p.image_size, job.device), device=job.device)
        val_metrics = classification_metrics(predictions=logits.argmax(1).numpy(), labels=labels.numpy(), classes=job.classes)
        job.writer.add_scalar("final/val_acc", val_metrics["accuracy"], best_epoch)
    job.writer.close()
    seconds = time.perf_counter() - t_start
    metrics = {
        "val": val_metrics, "best_epoch": best_epoch, "history": history, "seconds": seconds, "interrupted": interrupted,
        "num_train": len(data.train_set), "num_val": 0 if data.val_set is None else len(data.val_set), **job.extra,
    }
    model.eval()
    meta = {**model_meta(model, classes=job.classes, image_size=p.image_size, strategy=p.strategy.name), "trained_on": config.data, "method": config.method,
            **({"teacher": config.teacher} if config.teacher else {})}
    job.folder.save(model=model, meta=meta, config=run_config, metrics=metrics, splits=splits_record(config, data))
    if not interrupted:
        job.folder.finish()
    val_acc = None if val_metrics is None else val_metrics["accuracy"]
    return TrainResult(job.folder.path, val_acc, best_epoch, seconds, job.resolved, history, interrupted)


def _search_then_train(config: TrainConfig, dist: Distributed, device: torch.device, t_start: float) -> TrainResult:
    """``--search`` (``advise.search.search_then_train``) over the advisor's candidates."""
    if not _wants_advice(config):
        raise ConfigError("--search compares the advisor's candidates; use it with --strategy auto")
    if dist.enabled:
        raise ConfigError("--search trains its candidates in one process; drop --devices (or torchrun) for the search")
    advice = advise(
        config.data, backbone=config.backbone, weights=config.weights, labels_per_class=config.labels_per_class,
        seed=config.seed, device=str(device), image_size=config.image_size, num_workers=config.num_workers,
        on_bad_image=config.on_bad_image, use_cache=config.feature_cache,
        val_fraction=0.0 if config.val else config.val_fraction,
    )

    def run(cfg: TrainConfig, **kw: Any) -> TrainResult:
        return _train(cfg, dist, device, t_start if cfg is config else time.perf_counter(), advice=advice if cfg is config else None, **kw)

    return search_then_train(config, advice, run)


def ensemble(
    runs: list[str] | None = None,
    *,
    output: str | Path = "runs/ensemble",
    rule: str = "auto",
    val: str | None = None,
    test: str | None = None,
    members: int | None = None,
    backbones: list[str] | None = None,
    recipe: TrainConfig | None = None,
    device: str = "auto",
    overwrite: bool = False,
    on_bad_image: str = "skip",
    calibrate: bool = True,
) -> dict[str, Any]:
    """Combine finished runs into an ensemble run (``api_ensemble.build_ensemble``); with
    ``members`` and/or ``backbones``, first train the members of ``recipe`` (a TrainConfig: the
    data and every training option) into ``OUTPUT/members/``, then combine them."""
    runs = list(runs or [])
    refuse_finished(output, overwrite)  # before any member trains
    if members is not None or backbones:
        if recipe is None:
            raise ConfigError("--members/--backbones train the members: give the DATA to train them on")
        if runs:
            raise ConfigError("give either finished runs to combine, or the DATA for --members/--backbones to train on, not both")
        runs = [str(p) for p in train_members(recipe, members=members or 1, backbones=backbones, output=output, train_one=train)]
        val = val if val is not None else recipe.val
    return build_ensemble(runs, output=output, rule=rule, val=val, test=test, device=device, overwrite=overwrite, on_bad_image=on_bad_image,
                          calibrate=calibrate)


def pretrain(data: str, **kw: Any) -> dict[str, Any]:
    """A body trained by a pretext task on unlabeled images (``api_pretrain.pretrain``)."""
    from .api_pretrain import pretrain as run

    return run(data, **kw)


def probe(bodies: list[str], data: str, **kw: Any) -> dict[str, Any]:
    """Linear-probe and kNN accuracy of several bodies on the same labels (``api_probe.probe``)."""
    from .api_probe import probe as run

    return run(bodies, data, **kw)


def segment_train(data: str, **kw: Any) -> dict[str, Any]:
    """A segmenter trained on images and masks (``api_segment.segment_train``)."""
    from .api_segment import segment_train as run

    return run(data, **kw)


def segment_eval(run_dir: str | Path, data: str, **kw: Any) -> dict[str, Any]:
    """A segmenter's mIoU, per-class IoU, pixel accuracy and boundary F (``api_segment.segment_eval``)."""
    from .api_segment import segment_eval as run

    return run(run_dir, data, **kw)


def segment_predict(run_dir: str | Path, inputs: list[str], **kw: Any) -> list[dict[str, Any]]:
    """Mask PNGs and overlays at the images' original sizes (``api_segment.segment_predict``)."""
    from .api_segment import segment_predict as run

    return run(run_dir, inputs, **kw)


def detect_train(data: str, **kw: Any) -> dict[str, Any]:
    """A detector trained on a boxes CSV (``api_detect.detect_train``)."""
    from .api_detect import detect_train as run

    return run(data, **kw)


def detect_eval(run_dir: str | Path, data: str, **kw: Any) -> dict[str, Any]:
    """A detector's mAP, matches at IoU 0.5 and CorLoc, beside a classifier's CAM boxes (``api_detect.detect_eval``)."""
    from .api_detect import detect_eval as run

    return run(run_dir, data, **kw)


def detect_predict(run_dir: str | Path, inputs: list[str], **kw: Any) -> list[dict[str, Any]]:
    """Boxes drawn on each image and a boxes CSV (``api_detect.detect_predict``)."""
    from .api_detect import detect_predict as run

    return run(run_dir, inputs, **kw)


def export(run_dir: str | Path, **kw: Any) -> dict[str, Any]:
    """The run's model as ONNX or a torch.export archive, checked against PyTorch (``api_export.export``)."""
    from .api_export import export as run

    return run(run_dir, **kw)


def serve(source: str | Path, **kw: Any) -> None:
    """The HTTP prediction service over a run or an exported model (``serve.run.serve``)."""
    from .serve.run import serve as run

    run(source, **kw)

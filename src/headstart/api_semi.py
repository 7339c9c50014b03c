"""The self-training API and the unlabeled pieces of a training run.

``selftrain`` runs Noisy Student rounds (``semi.selftrain``) through ``train``, scoring each round
on the data's test split where it has one; ``self_training`` is ``train --unlabeled`` with
``--method auto`` (a teacher, then a student). ``read_unlabeled``, ``teacher_targets`` and
``pool_epochs`` are the steps ``api._train`` takes when a run has unlabeled images.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Callable

import torch

from .console import console
from .data import ImageSet
from .data.sources import is_builtin
from .engine import Prepare, cached_features
from .engine.cache import FeatureCache, default_cache_dir
from .runfolder import read_config
from .semi.selftrain import SelftrainPlan, finished
from .semi.selftrain import selftrain as run_rounds
from .semi.teacher import PROPAGATE, load_table, run_teacher_table, save_table, table_summary


def selftrain(
    teacher: str | Path,
    *,
    unlabeled: str,
    rounds: int = 1,
    output: str | Path = "runs/selftrain",
    student: str | None = None,
    options: dict[str, Any] | None = None,
    drop_path_rate: float = 0.2,
    resume: bool = False,
    device: str | None = None,
    **overrides: Any,
) -> list[dict]:
    """Noisy Student from the finished run ``teacher``: ``rounds`` students, each taught by the
    one before on the ``unlabeled`` images (a folder, or ``pool``); the table of rounds (also in
    ``output/rounds.json`` and ``rounds.md``). ``overrides`` are further ``TrainConfig`` fields
    for every student (``epochs``, ``unlabeled_limit``, ``image_size``...)."""
    from .api import train
    from .api_predict import evaluate

    if device is not None:
        overrides["device"] = device
    data = (read_config(Path(teacher)).get("requested") or {}).get("data")

    def score(run: str) -> dict[str, Any]:
        metrics = json.loads((Path(run) / "metrics.json").read_text())
        out: dict[str, Any] = {"val_acc": (metrics.get("val") or {}).get("accuracy")}
        if data and is_builtin(data):
            out["test_acc"] = evaluate(run, device=overrides.get("device", "auto"))["accuracy"]
        return out

    plan = SelftrainPlan(
        teacher=str(teacher), unlabeled=unlabeled, rounds=rounds, output=str(output), student=student, options=dict(options or {}),
        overrides=overrides, drop_path_rate=drop_path_rate,
    )
    return run_rounds(plan, train, score, resume=resume)


ROUTE_FILE = "selftrain.json"
"""Written first by ``train --unlabeled`` (``--method auto``): the request, so ``--resume`` can
continue the teacher or the student, whichever was stopped."""

MIN_POOL_RATIO = 2.0
"""Self-training is tried only when the pool holds at least this many images per labeled one."""


def _pool_limit(config: Any, teacher: Path, pool: int, ratio: int, spent_s: float) -> tuple[int | None, str]:
    """How many unlabeled images the student can use within ``--time-budget``: from the
    teacher's measured training speed (images per second), a forward pass over each unlabeled
    image (~1/3 of a training step's cost) and one epoch of student steps that each train
    ``1 + ratio`` images per labeled one. ``None``: no budget, every image."""
    if config.time_budget is None:
        return None, "no --time-budget: every unlabeled image"
    m = json.loads((teacher / "metrics.json").read_text())
    images = sum(1 for _ in m.get("history") or []) * int(m.get("num_train") or 0)
    rate = images / max(1e-6, float(m.get("fit_seconds") or m.get("seconds") or 1.0))
    left = 60.0 * config.time_budget - spent_s
    per_image = (1.0 / 3.0 + (1.0 + ratio) / ratio) / max(rate, 1e-6)
    n = int(0.85 * left / per_image)  # 15 % kept for the advice, the teacher's pass set-up and the final scoring
    why = (f"--time-budget {config.time_budget:g} min: {left / 60:.1f} min left after the teacher, which trained at {rate:.0f} img/s; "
           f"labelling and one student pass cost ~{per_image * 1000:.1f} ms per unlabeled image")
    return max(0, min(pool, n)), why


def self_training(config: Any, train_one: Any, t_start: float) -> Any:
    """``headstart train DATA --unlabeled ...`` with ``--method auto``: a supervised teacher in
    ``OUT/teacher`` (the recipe asked for), then, when the pool is large enough to pay, one
    Noisy Student round in ``OUT`` taught by it (soft targets, strong views, dropout and
    stochastic depth), its unlabeled share sized to ``--time-budget``. Each decision is a
    reason in the student's ``config.yaml``."""
    import time

    from .config import TrainConfig
    from .data.labeled import read_training_data
    from .errors import DataError
    from .fileio import atomic_write
    from .semi.pool import POOL
    from .semi.selftrain import STUDENT_NOISE

    out = Path(config.output)
    route = out / ROUTE_FILE
    if not config.resume:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write(route, lambda tmp: Path(tmp).write_text(json.dumps({"requested": config.to_dict()}, indent=2)))
    teacher_dir = out / "teacher"
    teacher_cfg = config.with_updates(method="supervised", unlabeled=None, teacher=None, output=str(teacher_dir),
                                      unlabeled_limit=None, transductive=False)
    data = read_training_data(config.with_updates(unlabeled=None))
    labeled = len(data.labeled_idx)
    pool = len(data.pool_idx) if config.unlabeled == POOL else None
    if pool is None:
        from .data import load_unlabeled

        pool = len(load_unlabeled(config.unlabeled, on_bad_image=config.on_bad_image))
    if pool < MIN_POOL_RATIO * labeled:
        console.print(f"  [bold]method[/bold] auto: {pool} unlabeled images for {labeled} labeled (< {MIN_POOL_RATIO:g}×): supervised")
        plain = config.with_updates(method="supervised", resume=config.resume and (out / "config.yaml").is_file())
        return train_one(plain, notes={"method": f"auto: {pool} unlabeled images for {labeled} labeled is fewer than "
                                                 f"{MIN_POOL_RATIO:g}× — too few to pay for a teacher and a student: supervised"})
    t0 = time.perf_counter()
    if finished(teacher_dir):
        console.print(f"  [dim]teacher {teacher_dir} already trained[/dim]")
    else:
        budget = None if config.time_budget is None else 0.35 * config.time_budget
        train_one(teacher_cfg.with_updates(time_budget=budget, resume=config.resume and (teacher_dir / "checkpoint").exists()))
    spent = time.perf_counter() - t_start
    options = {**STUDENT_NOISE, **{k: str(v) for k, v in (config.method_options or {}).items()}}
    ratio = int(options.get("ratio", 3))
    limit, why_limit = _pool_limit(config, teacher_dir, pool, ratio, spent)
    if config.unlabeled_limit is not None:
        limit, why_limit = min(limit or pool, config.unlabeled_limit), "--unlabeled-limit"
    if limit is not None and limit < 100:
        raise DataError(f"--time-budget {config.time_budget:g} leaves time for only {limit} unlabeled images after the teacher "
                        f"({teacher_dir}, a finished supervised run); raise --time-budget, or use that teacher as it is")
    student = config.with_updates(
        method="pseudolabel", teacher=str(teacher_dir), method_options=options, unlabeled_limit=limit, search=False,
        drop_path_rate=config.drop_path_rate or 0.2, resume=config.resume and (out / "checkpoint").exists(),
        time_budget=None if config.time_budget is None else max(0.5, config.time_budget - spent / 60.0),
    )
    notes = {
        "method": (f"auto with {pool} unlabeled images for {labeled} labeled: self-training — a supervised teacher ({teacher_dir}, "
                   f"{time.perf_counter() - t0:.0f} s) labels the unlabeled images with soft targets and this student learns from "
                   "them and the labels, with noise (the strong view, dropout, stochastic depth): Noisy Student, one round; "
                   "`headstart selftrain` runs more"),
        "unlabeled_limit": why_limit if limit is None or limit >= pool else f"{limit} of {pool} unlabeled images: {why_limit}",
    }
    return train_one(TrainConfig.from_dict(student.to_dict()), notes=notes)


# -- the unlabeled pieces of one training run (``api._train`` passes its ``_Job``) --------------


def read_unlabeled(job: Any) -> None:
    """``--unlabeled``: the pool read and checked (``semi.pool``), into the job and its data."""
    from .semi.pool import evaluation_sets, read_pool

    config, data = job.config, job.data
    job.pool = read_pool(
        config.unlabeled, full=data.full, pool_idx=data.pool_idx, labeled=data.labeled,
        evaluation=evaluation_sets(config.data, data.val_set if config.val else None, config.on_bad_image), data_spec=config.data,
        transductive=config.transductive, limit=config.unlabeled_limit, seed=config.seed, on_bad_image=config.on_bad_image,
    )
    data.unlabeled, data.pool_record = job.pool.images, job.pool.record()
    if not job.needs.unlabeled_views and "method" not in job.reasons:
        console.print(f"  [dim]--method {config.method} does not learn from the unlabeled images (--method pseudolabel or fixmatch does)[/dim]")


def teacher_targets(job: Any, build_body: Callable[[], Any]) -> None:
    """``--teacher``: the fixed table of class probabilities for the pool, computed once (the
    teacher run's predictions, or label spreading over the frozen body's features) and kept in
    the run folder, so a resumed run reads the same targets."""
    config, folder = job.config, job.folder.path
    pool_x = job.tensors["unlabeled_x"]
    table = load_table(folder, len(pool_x)) if config.resume else None
    if table is None:
        if config.teacher == PROPAGATE:
            table = _propagated_table(job, build_body())
        else:
            table = run_teacher_table(config.teacher, pool_x, job.classes, device=str(job.device))
        if job.dist.is_main:
            save_table(folder, table, {"teacher": config.teacher, "pool": len(pool_x)})
    summary = table_summary(table, job.pool.truth if job.pool is not None else None)
    job.extra["teacher"] = {"source": config.teacher, **summary}
    right = f", {summary['accuracy']:.1%} right by the hidden labels" if "accuracy" in summary else ""
    console.print(
        f"  [bold]teacher[/bold] {config.teacher}: mean confidence {summary['mean_confidence']:.2f}, "
        f"{summary['share_conf_0.9']:.0%} of the pool at ≥ 0.9{right}"
    )
    job.setup = dataclasses.replace(job.setup, pool_targets=table)


def _propagated_table(job: Any, body: Any) -> torch.Tensor:
    """``--teacher propagate``: labels spread from the labeled images over a kNN graph of the
    frozen pretrained body's features of labeled and pool images (``semi.propagate``)."""
    from .semi.propagate import propagate

    config, p, t = job.config, job.plan, job.tensors
    body = body.to(job.device).to(memory_format=torch.channels_last)
    body.freeze(body.num_stages)
    cache = FeatureCache(default_cache_dir() if config.feature_cache else None)
    prepare = Prepare(body.preprocess, p.image_size, job.device)

    def feats(imageset: ImageSet, x: torch.Tensor, what: str) -> torch.Tensor:
        y = torch.zeros(len(x), dtype=torch.long)
        return cached_features(
            body, imageset, x, y, cache=cache, image_size=p.image_size, prepare=prepare, device=job.device, dist=job.dist,
            what=what, show_progress=config.progress,
        )[0]

    labeled = feats(job.data.train_set, t["train_x"], "labeled")
    pool = feats(job.data.unlabeled, t["unlabeled_x"], "unlabeled")
    out = propagate(labeled.numpy(), t["train_y"].numpy(), pool.numpy(), len(job.classes), seed=config.seed)
    job.extra["propagation"] = {"seconds": out.seconds, **out.info}
    return torch.from_numpy(out.probs).float()


def pool_epochs(job: Any) -> tuple[int, int]:
    """For a method with an unlabeled stream: (steps per epoch, epochs). An epoch draws about
    the pool's size of unlabeled images (at least one pass over the labeled ones); without
    --epochs, as many epochs as the plan's optimizer steps fill (at least one)."""
    ratio = job.needs.unlabeled_ratio or 1
    n, world = len(job.data.train_set), job.dist.world_size
    full, rest = divmod(n, job.plan.batch_size)
    labeled_steps = full + (1 if rest >= world else 0)  # as engine.Batches counts them
    per_step = ratio * job.plan.batch_size
    pool = len(job.pool)  # type: ignore[arg-type]
    steps = max(labeled_steps, -(-pool // per_step))
    if job.config.epochs:
        return steps, job.config.epochs
    epochs = max(1, round(job.plan.epochs * labeled_steps / steps))
    job.reasons["epochs"] = (
        f"{epochs} epoch(s) of {steps} steps, each drawing ~{steps * per_step} unlabeled images (the pool's {pool}) beside "
        f"{job.plan.batch_size} labeled per step: the plan's {job.plan.epochs * labeled_steps} optimizer steps, at least one pass"
    )
    job.resolved["epochs"] = epochs
    return steps, epochs

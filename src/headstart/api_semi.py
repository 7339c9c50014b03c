"""The self-training API: ``selftrain`` runs Noisy Student rounds (``semi.selftrain``) through
``train``, scoring each round on the data's test split where it has one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .data.sources import is_builtin
from .runfolder import read_config
from .semi.selftrain import SelftrainPlan
from .semi.selftrain import selftrain as run_rounds


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


def _finished(run: Path) -> bool:
    m = run / "metrics.json"
    return (run / "model.json").is_file() and m.is_file() and not json.loads(m.read_text()).get("interrupted")


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
    from .console import console
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
    if _finished(teacher_dir):
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

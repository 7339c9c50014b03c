"""``headstart distill TEACHER_RUN --student BACKBONE``: a student trained by ``--method distill``
on the teacher's own labeled images (its data, labels per class and split seed), the teacher
any finished run, an ensemble included; then the student beside its teacher — accuracy,
parameters, file size, img/s at batch 64 and per-image latency at batch 1 on this machine.

Wiring only: the loss is ``methods/distill.py``.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .backbones import Preprocess
from .config import TrainConfig
from .console import console
from .ensemble.model import MemberInput
from .errors import ConfigError, DataError
from .runfolder import ENSEMBLE, load_run, read_config, read_splits, write_card, write_json

DEFAULT_RATIO = 3
"""Unlabeled images per labeled one in a distillation batch when ``--unlabeled`` is given (as
the pseudo-label and FixMatch students draw them)."""


class TeacherOnStudentInput(nn.Module):
    """The teacher, fed the student's prepared batch: the pixels are recovered from the
    student's normalisation (``x · std + mean``, at the student's size, after its augmentation:
    the very view the student sees), then prepared as the teacher's own run prepares them (its
    normalisation and input size; an ensemble prepares them per member itself). Outputs in the
    student's class order."""

    def __init__(self, teacher: nn.Module, student: Preprocess, order: list[int], *, own: Preprocess | None, size: int) -> None:
        super().__init__()
        self.teacher = teacher
        self.register_buffer("mean", torch.tensor(student.mean).view(1, 3, 1, 1) * 255, persistent=False)
        self.register_buffer("std", torch.tensor(student.std).view(1, 3, 1, 1) * 255, persistent=False)
        self.own = None if own is None else MemberInput(own, size)  # the teacher's own preparation, as an ensemble member's
        self.register_buffer("order", torch.tensor(order, dtype=torch.long), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pixels = x.float() * self.std + self.mean
        if self.own is not None:
            pixels = self.own(pixels)
        return self.teacher(pixels)[:, self.order]


def teacher_module(spec: str, student: Preprocess, classes: list[str], device: torch.device) -> nn.Module:
    """``--teacher RUN`` as the module ``--method distill`` calls on each batch."""
    if "," in str(spec) and not Path(spec).is_dir():
        raise ConfigError(f"--method distill takes one --teacher run; combine several first: `headstart ensemble {spec.replace(',', ' ')} -o runs/ens`")
    run = load_run(spec, device=device)
    if sorted(run.classes) != sorted(classes):
        raise DataError(f"the teacher {spec} knows the classes {run.classes}, this run has {classes}; a teacher must be trained on the same classes")
    order = [run.classes.index(c) for c in classes]
    own = None if run.kind == ENSEMBLE else run.preprocess
    module = TeacherOnStudentInput(run.model, student, order, own=own, size=run.image_size)
    return module.to(device).eval()


def distill(
    teacher: str | Path,
    *,
    student: str = "efficientnet_lite0",
    output: str | Path = "runs/distilled",
    temperature: float = 4.0,
    alpha: float = 0.9,
    unlabeled: str | None = None,
    cached_teacher: bool = False,
    view: str = "weak",
    test: str | None = None,
    recipe: TrainConfig | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """Train ``student`` from ``teacher`` into ``output`` and compare the two (``compare``).

    The student trains on the teacher's labeled images and holds out the teacher's validation
    images: its data, ``--labels-per-class``, split seed and validation share (or ``--val``)
    come from the teacher's run (an ensemble's first member's), so it learns from no label the
    teacher did not, and its validation images stay unseen by both. ``recipe`` carries any other training options."""
    from .api import train

    teacher = Path(teacher)
    if not (teacher / "model.json").is_file():
        raise ConfigError(f"{teacher} is not a finished run folder (no model.json); train the teacher first")
    meta = json.loads((teacher / "model.json").read_text())
    source = teacher
    if meta.get("kind") == ENSEMBLE:
        source = (teacher / meta["members"][0]["path"]).resolve()
    splits = read_splits(source)
    if not splits.get("data"):
        raise ConfigError(f"{teacher} records no training data (splits.json); give the student's data with `headstart train DATA --method distill --teacher {teacher}`")
    options = {"temperature": temperature, "alpha": alpha, "view": view, "cached_teacher": cached_teacher,
               "ratio": DEFAULT_RATIO if unlabeled else 0}
    base = recipe.to_dict() if recipe is not None else {}
    base.update(overrides)
    resolved = read_config(source).get("resolved") or {}
    same_split = {"val": splits.get("val_data")} if splits.get("val_data") else {"val_fraction": resolved.get("val_fraction", 0.0)}
    config = TrainConfig.from_dict({
        **base, **same_split,
        "data": splits["data"], "labels_per_class": splits.get("labels_per_class"), "split_seed": splits.get("split_seed"),
        "backbone": student, "output": str(output), "method": "distill", "teacher": str(teacher), "unlabeled": unlabeled,
        "method_options": {**options, **(base.get("method_options") or {})},
    })
    t0 = time.perf_counter()
    result = train(config)
    seconds = time.perf_counter() - t0
    comparison = compare(teacher, Path(result.run_dir), test=test, device=config.device)
    comparison["student_train_seconds"] = seconds
    metrics_path = Path(result.run_dir) / "metrics.json"
    metrics = json.loads(metrics_path.read_text())
    metrics["distillation"] = comparison
    write_json(metrics_path, metrics)
    write_card(metrics_path.parent)
    return {"run_dir": str(result.run_dir), **comparison}


def _files_bytes(run_dir: Path) -> int:
    meta = json.loads((run_dir / "model.json").read_text())
    if meta.get("kind") == ENSEMBLE:
        return sum(_files_bytes((run_dir / m["path"]).resolve()) for m in meta["members"])
    return (run_dir / "model.safetensors").stat().st_size


def cost(predictor: Any, images: torch.Tensor, *, latency_images: int = 20) -> dict[str, float]:
    """img/s at batch 64 (after two warm-up batches) and the median per-image latency at batch 1."""
    from .api_ensemble import images_per_second

    model, prepare = predictor.model, predictor.prepare
    model.eval()
    ips = images_per_second(lambda b: model(prepare(b)), images)
    with torch.inference_mode():
        lat = []
        for i in range(min(latency_images, len(images))):
            t = time.perf_counter()
            model(prepare(images[i:i + 1]))
            lat.append(time.perf_counter() - t)
    return {"images_per_second": ips, "latency_ms_batch1": 1000 * statistics.median(lat)}


def _recorded_accuracy(run: Path) -> float | None:
    """The teacher's accuracy on the official test split from its ``eval-test.json``, when one is
    there: every student of a teacher is compared on the same test images, and for an ensemble
    each scoring is a pass of every member over them. A run retrained (or an ensemble rebuilt) in
    its folder first removes its ``eval-*.json`` (``RUN_PRODUCTS``), so a file present is the
    current model's; one older than the weights is not trusted."""
    path, weights = run / "eval-test.json", run / "model.safetensors"
    if not path.is_file() or (weights.is_file() and path.stat().st_mtime < weights.stat().st_mtime):
        return None
    try:
        acc = json.loads(path.read_text()).get("accuracy")
    except (OSError, ValueError):
        return None
    if isinstance(acc, (int, float)):
        console.print(f"  [dim]teacher {run}: test accuracy {acc:.4f} as recorded in {path}[/dim]")
        return float(acc)
    return None


def compare(teacher: Path, student: Path, *, test: str | None = None, device: str = "auto", timed: int = 256) -> dict[str, Any]:
    """Student beside teacher: test accuracy (the official test split of a built-in set, or
    ``test``), parameters, weights' file size, img/s at batch 64 and latency at batch 1."""
    from .api_predict import evaluate
    from .data import resolve
    from .data.sources import is_builtin
    from .predictor import Predictor

    rows = {}
    for name, run in (("teacher", teacher), ("student", student)):
        p = Predictor(run, device=device)
        data = test or p.run.meta.get("trained_on")
        acc = None
        images = None
        if data is not None and (test is not None or is_builtin(data)):
            acc = _recorded_accuracy(run) if name == "teacher" and test is None else None
            if acc is None:
                acc = evaluate(run, test, device=device)["accuracy"]
            imageset = resolve(data, split="test")
            images = p.images_of(imageset.subset(np.arange(min(timed, len(imageset)))), num_workers=0)
        params = sum(t.numel() for t in p.model.parameters()) + sum(b.numel() for b in p.model.buffers())
        rows[name] = {"run": str(run), "backbone": p.run.meta.get("backbone") or f"ensemble of {len(p.run.members)}",
                      "image_size": p.run.image_size, "test_accuracy": acc, "parameters": int(params), "file_bytes": _files_bytes(run),
                      **(cost(p, images) if images is not None else {})}
    t, s = rows["teacher"], rows["student"]
    out: dict[str, Any] = {"teacher": t, "student": s}
    if "images_per_second" in s and "images_per_second" in t:
        out["speedup"] = s["images_per_second"] / t["images_per_second"]
    if t["test_accuracy"] is not None and s["test_accuracy"] is not None:
        out["gap_to_teacher"] = s["test_accuracy"] - t["test_accuracy"]
    console.print("  " + " · ".join(
        f"{k} {r['backbone']} {r['image_size']}px: acc {r['test_accuracy'] if r['test_accuracy'] is None else round(r['test_accuracy'], 4)}, "
        f"{r['parameters'] / 1e6:.2f}M params, {r['file_bytes'] / 1e6:.1f} MB"
        + (f", {r['images_per_second']:.0f} img/s, {r['latency_ms_batch1']:.1f} ms/img at batch 1" if "images_per_second" in r else "")
        for k, r in rows.items()))
    return out

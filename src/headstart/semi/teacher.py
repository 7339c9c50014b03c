"""Where fixed pseudo-label targets come from (``--teacher``): a finished run's class
probabilities for every unlabeled image, computed once in batches and kept in the student's
run folder (``teacher_targets.safetensors``), so a resumed student reads the same table.

A teacher's table is also kept in the *teacher's* folder (``teacher-tables/``), keyed by the
pool's pixels and the teacher's weights: the next student of the same teacher on the same pool
(another architecture, another temperature, a second ``selftrain`` round) reads it instead of
paying for another pass over the pool — for an ensemble of three Lite0 runs at 112 px on 59,900
images that pass is several minutes on 2 cores. A teacher retrained in its folder has new
weights and so a new key; ``RUN_PRODUCTS`` removes the old tables with the old run. The pass
itself runs the network in onnxruntime where that agrees with PyTorch (``export/passes.py``:
about twice the eager speed on 2 cores); the graph it uses is kept in the same folder.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..console import console
from ..errors import ConfigError, DataError

TARGETS_FILE = "teacher_targets.safetensors"
TABLES_DIR = "teacher-tables"
PROPAGATE = "propagate"


def teacher_runs(spec: str) -> list[str]:
    """The run folders ``--teacher`` names: one, or several separated by commas (an ensemble:
    the mean of their probabilities). A folder whose own name holds a comma is taken whole."""
    spec = str(spec)
    if Path(spec).is_dir() or "," not in spec:
        return [spec]
    return [s.strip() for s in spec.split(",") if s.strip()]


def check_teachers(spec: str) -> None:
    """Refuse, before any data is read, a ``--teacher`` that names no finished run."""
    if spec == PROPAGATE:
        return
    for run in teacher_runs(spec):
        if not (Path(run) / "model.json").is_file():
            raise ConfigError(f"--teacher {run} is not a finished run folder (no model.json); train the teacher first, or give "
                              f"--teacher {PROPAGATE}")


def member_tables(teacher: str, pool_x: torch.Tensor, classes: list[str], *, device: str = "auto", batch_size: int = 256) -> list[torch.Tensor]:
    """The class probabilities ``(P, C)`` of each finished run ``teacher`` names, for the uint8
    pool images ``pool_x``, in the student's class order (a teacher must have the same classes).
    Several runs teach by the mean of their tables."""
    return [_one_table(run, pool_x, classes, device=device, batch_size=batch_size) for run in teacher_runs(teacher)]


def _one_table(teacher: str, pool_x: torch.Tensor, classes: list[str], *, device: str, batch_size: int) -> torch.Tensor:
    from ..predictor import Predictor

    path = Path(teacher)
    if not (path / "model.json").is_file():
        raise ConfigError(f"--teacher {teacher} is not a finished run folder (no model.json); train the teacher first, or give "
                          f"--teacher {PROPAGATE}")
    predictor = Predictor(path, device=device)
    if sorted(predictor.classes) != sorted(classes):
        raise DataError(f"the teacher {teacher} knows the classes {predictor.classes}, this run has {classes}; a teacher must "
                        "be trained on the same classes")
    order = [predictor.classes.index(c) for c in classes]
    cached = path / TABLES_DIR / f"{table_key(path, pool_x)}.safetensors"
    if cached.is_file():
        from safetensors.torch import load_file

        try:
            probs = load_file(str(cached))["probs"]
        except Exception as e:  # a damaged file only costs the pass again
            console.print(f"  [dim]teacher {teacher}: {cached} could not be read ({e}); labelling the images again[/dim]")
            probs = None
        if probs is not None and probs.shape == (len(pool_x), len(predictor.classes)):
            console.print(f"  [dim]teacher {teacher}: its table of these {len(pool_x)} images read from {cached}[/dim]")
            return probs[:, order].contiguous()
    from ..export.passes import proba

    t0 = time.perf_counter()
    probs_np, engine = proba(predictor, pool_x, path / TABLES_DIR, batch_size=batch_size)
    probs = torch.from_numpy(np.ascontiguousarray(probs_np)).float()
    console.print(f"  [dim]teacher {teacher} labelled {len(pool_x)} images in {time.perf_counter() - t0:.0f} s ({engine})[/dim]")
    _keep(cached, probs)
    return probs[:, order].contiguous()


def member_features(
    teacher: str, labeled_x: torch.Tensor, pool_x: torch.Tensor, classes: list[str], *, device: str = "auto"
) -> list[tuple[torch.Tensor, np.ndarray, np.ndarray]]:
    """For each finished run ``teacher`` names: its probabilities for the pool ``(P, C)`` (in the
    student's class order) and its pooled features of the labeled and the pool images, from one
    pass over both (``-O table=graph`` spreads the labels over them). The pool's probabilities are
    kept in the teacher's folder as ``member_tables`` keeps them."""
    from ..export.passes import proba_features
    from ..predictor import Predictor

    out = []
    for run in teacher_runs(teacher):
        path = Path(run)
        predictor = Predictor(path, device=device)
        if predictor.is_ensemble:
            raise ConfigError(f"--teacher {run} is an ensemble: -O table=graph needs each member's own features; give the "
                              "members as --teacher a,b,c")
        if sorted(predictor.classes) != sorted(classes):
            raise DataError(f"the teacher {teacher} knows the classes {predictor.classes}, this run has {classes}; a teacher "
                            "must be trained on the same classes")
        order = [predictor.classes.index(c) for c in classes]
        t0 = time.perf_counter()
        _, labeled_f, _ = proba_features(predictor, labeled_x, path / TABLES_DIR)
        probs_np, pool_f, engine = proba_features(predictor, pool_x, path / TABLES_DIR)
        console.print(f"  [dim]teacher {run}: probabilities and features of {len(labeled_x)} labeled and {len(pool_x)} unlabeled "
                      f"images in {time.perf_counter() - t0:.0f} s ({engine})[/dim]")
        probs = torch.from_numpy(np.ascontiguousarray(probs_np)).float()
        _keep(path / TABLES_DIR / f"{table_key(path, pool_x)}.safetensors", probs)
        out.append((probs[:, order].contiguous(), labeled_f, pool_f))
    return out


def table_key(run: Path, pool_x: torch.Tensor) -> str:
    """What a teacher's table depends on: the pool's pixels (shape and bytes) and the teacher's
    weights (``model.safetensors``, and ``model.json``, which for an ensemble names its members'
    weights by hash)."""
    import hashlib

    h = hashlib.blake2b(digest_size=16)
    h.update(str(tuple(pool_x.shape)).encode())
    h.update(memoryview(np.ascontiguousarray(pool_x.numpy())).cast("B"))  # the bytes, without a copy
    for name in ("model.json", "model.safetensors"):
        file = run / name
        if file.is_file():
            with open(file, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 22), b""):
                    h.update(chunk)
    return h.hexdigest()


def _keep(path: Path, probs: torch.Tensor) -> None:
    """The table into the teacher's folder for its next student; a folder that cannot be
    written (read-only, full) only costs that student the pass again."""
    from safetensors.torch import save_file

    try:
        path.parent.mkdir(exist_ok=True)
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp")  # each process of a group writes its own, then renames
        save_file({"probs": probs.contiguous()}, str(tmp))
        tmp.replace(path)
    except OSError as e:
        console.print(f"  [dim]the teacher's table was not kept in {path.parent} ({e.strerror or e}); its next student labels the pool again[/dim]")


def save_table(folder: Path, table: torch.Tensor, info: dict[str, Any]) -> None:
    """The table and what made it (``info``: JSON-able values) into the run folder."""
    from safetensors.torch import save_file

    save_file({"probs": table.contiguous()}, str(folder / TARGETS_FILE), metadata={k: json.dumps(v) for k, v in info.items()})


def table_info(folder: Path) -> dict[str, Any]:
    """The ``info`` saved with the table (empty when there is none)."""
    from safetensors import safe_open

    path = folder / TARGETS_FILE
    if not path.is_file():
        return {}
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    out = {}
    for k, v in meta.items():
        try:
            out[k] = json.loads(v)
        except ValueError:  # a table saved before its info was JSON
            out[k] = v
    return out


def load_table(folder: Path, pool_size: int) -> torch.Tensor | None:
    """The table a run saved (``None`` if none); refused when the pool changed size."""
    path = folder / TARGETS_FILE
    if not path.is_file():
        return None
    from safetensors.torch import load_file

    table = load_file(str(path))["probs"]
    if len(table) != pool_size:
        raise DataError(f"{path} holds targets for {len(table)} unlabeled images, this run has {pool_size}; resume with the same "
                        "--unlabeled and --unlabeled-limit")
    return table


def table_summary(table: torch.Tensor, truth: np.ndarray | None) -> dict[str, Any]:
    """How confident the table is, and where hidden labels are known, how right."""
    conf, pred = table.max(1)
    out: dict[str, Any] = {"images": len(table), "mean_confidence": float(conf.mean())}
    for q in (0.5, 0.8, 0.9, 0.95):
        out[f"share_conf_{q}"] = float((conf >= q).float().mean())
    if truth is not None and (truth >= 0).any():
        t = torch.from_numpy(truth)
        known = t >= 0
        right = (pred == t) & known
        out["accuracy"] = float(right.sum() / known.sum())
        order = torch.argsort(conf, descending=True)
        for share in (0.5, 0.7):
            top = order[: max(1, int(share * len(order)))]
            k = known[top]
            out[f"accuracy_top_{int(share * 100)}"] = float(right[top].sum() / k.sum().clamp_min(1))
    return out


BALANCE_ITERATIONS = 50
"""Sinkhorn iterations of ``balance_table``: on Fashion-MNIST tables of 59,900 images the class
shares are within 1e-4 of the target after 50 (a few hundred milliseconds)."""


def balance_table(table: torch.Tensor, shares: Any, *, iterations: int = BALANCE_ITERATIONS) -> torch.Tensor:
    """``-O align`` with a teacher: the table (P, C) rescaled so the pool's mean probability of
    each class is its share of the labeled images (``shares``: C non-negative counts or shares;
    the row step removes any common scale) — distribution alignment applied once to the whole
    fixed table, by Sinkhorn-Knopp iterations that alternate scaling every class's column to its
    share and every row back to a distribution. A teacher that under-predicts the classes it
    confuses (Fashion-MNIST's shirts and pullovers) gives those back the images it is least sure
    of: on the route's tables at 10 labels per class the pseudo-labels were 0.5–1.5 points more
    right (benchmarks/results/semi-graph.md)."""
    p = table.detach().double().clamp_min(0.0)
    s = torch.as_tensor(np.asarray(shares, dtype=np.float64))
    if s.ndim != 1 or len(s) != p.shape[1] or bool((s < 0).any()) or not float(s.sum()) > 0:
        raise ValueError(f"class shares must be {p.shape[1]} non-negative numbers with a positive sum, got {s.tolist()}")
    for _ in range(iterations):
        p = p * (s / p.mean(0).clamp_min(1e-12))
        p = p / p.sum(1, keepdim=True).clamp_min(1e-12)
    return p.float()

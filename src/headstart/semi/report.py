"""The report's section on the unlabeled images: what the pool was (duplicates dropped, the
hidden labels), the teacher's table, the per-epoch mask rate, coverage, thresholds and
pseudo-label accuracy, and a sheet of the most confident wrong pseudo-labels."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ..report import Section, plots
from .pool import Pool, evaluation_sets, read_pool
from .teacher import TARGETS_FILE

SAMPLE = 2000
"""Pool images the run's own model scores for the sheet when no teacher table was kept."""


def rebuild_pool(run_dir: Path) -> tuple[Pool, Any]:
    """The run's unlabeled pool as training read it (same draw, same duplicates dropped), and
    the run's configuration."""
    from ..config import TrainConfig
    from ..console import console
    from ..data.labeled import read_training_data

    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    config = TrainConfig.from_dict(saved["requested"])
    quiet, console.quiet = console.quiet, True
    try:
        data = read_training_data(config)
        data.split(config, float((saved.get("resolved") or {}).get("val_fraction") or 0.0))
        pool = read_pool(
            config.unlabeled, full=data.full, pool_idx=data.pool_idx, labeled=data.labeled,
            evaluation=evaluation_sets(config.data, data.val_set if config.val else None, config.on_bad_image), data_spec=config.data,
            transductive=config.transductive, limit=config.unlabeled_limit, seed=config.seed, on_bad_image=config.on_bad_image,
        )
    finally:
        console.quiet = quiet
    return pool, config


def wrong_sheet(pool: Pool, probs: np.ndarray, index: np.ndarray, classes: list[str], count: int = 16) -> tuple[bytes | None, list[dict]]:
    """The ``count`` most confident pseudo-labels that the hidden labels say are wrong, as a
    picture sheet and rows (``probs`` are for the pool images at ``index``)."""
    from ..explain import enlarge, grid, png_bytes

    truth = pool.truth[index]
    pred, conf = probs.argmax(1), probs.max(1)
    wrong = np.flatnonzero((truth >= 0) & (pred != truth))
    order = wrong[np.argsort(-conf[wrong], kind="stable")][:count]
    if len(order) == 0:
        return None, []
    from PIL import Image

    tiles, caps, rows = [], [], []
    for j in order:
        i = int(index[j])
        tiles.append(enlarge(Image.fromarray(pool.images.get_rgb(i, size=None if pool.images.is_array else 96)))[0])
        caps.append(f"{classes[pred[j]][:14]} p={conf[j]:.2f}\ntrue {classes[truth[j]][:14]}")
        rows.append({"pool image": i, "pseudo-label": classes[pred[j]], "confidence": round(float(conf[j]), 4), "true": classes[truth[j]]})
    return png_bytes(grid(tiles, caps, columns=8)), rows


def pool_section(run_dir: Path, predictor: Any = None) -> Section | None:
    """The section, or ``None`` for a run trained without unlabeled images."""
    splits_path, metrics_path = run_dir / "splits.json", run_dir / "metrics.json"
    if not splits_path.is_file():
        return None
    record = json.loads(splits_path.read_text()).get("unlabeled")
    if not record:
        return None
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
    s = Section("unlabeled", "Unlabeled images")
    s.table([{k: v for k, v in record.items() if k != "duplicate_examples"}])
    if record.get("duplicate_examples"):
        s.note("Same content as a labeled or evaluation image, e.g.: " + "; ".join(record["duplicate_examples"][:5]))
    teacher = metrics.get("teacher")
    if teacher:
        s.text(f"Targets from the teacher {teacher.get('source')}: its class probabilities for every pool image, computed once; "
               "accuracy columns use the pool's hidden labels, which never train.")
        s.table([{k: v for k, v in teacher.items() if k != "members"}])
        members = teacher.get("members") or []
        if members:
            from .teacher import teacher_runs

            names = teacher_runs(str(teacher.get("source")))
            how = ("their kNN graphs joined spread the labels (below)" if metrics.get("graph") else "the mean of their probabilities")
            s.text(f"{len(members)} teachers taught together ({how}); each one's own predictions alone:")
            s.table([{"teacher": name, **m} for name, m in zip(names, members)])
    graph = metrics.get("graph")
    if graph:
        head = graph.get("head") or {}
        many = (graph.get("networks") or 1) > 1
        s.text(f"These targets are not the teacher's own predictions: the {graph.get('n_labeled')} labels spread over the kNN graph of "
               f"{'each teacher' if many else 'the teacher'}'s pooled features ({graph.get('k')} neighbours, α = {graph.get('alpha')}, "
               f"{graph.get('networks')} network(s){', their graphs joined' if many else ''}, {graph.get('seconds')} s). "
               f"{'The mean of the teachers' if many else 'The teacher'}'s own predictions, for comparison:")
        heads = {"targets": "the teachers' heads, their mean" if many else "teacher's head", **head}
        s.table([{"targets": "graph (trained on)", **{k: v for k, v in teacher.items() if k not in ("members", "source")}}, heads]
                if teacher else [heads])
    aligned = metrics.get("aligned")
    if aligned:
        before = (f"; before, {aligned['accuracy_before']:.1%} of them were right by the hidden labels"
                  if aligned.get("accuracy_before") is not None else "")
        s.text(f"The targets were balanced to the labeled images' class shares (-O align: {aligned['changed']:.1%} of the pool "
               f"changed class{before}).")
    check = (metrics.get("route") or {}).get("validation")
    if check:
        s.text(f"The student against its teachers together on {check['images']} validation images: {check['verdict']} "
               f"(McNemar z = {check['z']:.2f}; |z| > 2 is beyond noise).")
        s.table([{"model": who, **check[who]} for who in ("student", "teachers")])
    s.figure(plots.pool_curves(metrics.get("history") or []), "Per epoch: the share of drawn unlabeled images kept, the share of the "
             "pool covered, the kept pseudo-labels' accuracy by the hidden labels, and the per-class confidence thresholds.")
    pool, _ = rebuild_pool(run_dir)
    if not pool.has_truth:
        s.text("The pool has no hidden labels (a folder without class subfolders), so pseudo-label accuracy cannot be shown.")
        return s
    table = run_dir / TARGETS_FILE
    if table.is_file():
        from safetensors.torch import load_file

        probs = load_file(str(table))["probs"].numpy()
        index = np.arange(len(probs))
        what = "the teacher's"
    elif predictor is not None:
        rng = np.random.default_rng(0)
        index = np.sort(rng.choice(len(pool), size=min(SAMPLE, len(pool)), replace=False))
        x = predictor.images_of(pool.images.subset(index), num_workers=0)
        probs = predictor.proba_tensor(x, batch_size=256)
        what = f"this model's (on {len(index)} pool images)"
    else:
        return s
    png, rows = wrong_sheet(pool, probs, index, list(predictor.classes if predictor is not None else []) or _classes(run_dir))
    right = float((probs.argmax(1) == pool.truth[index])[pool.truth[index] >= 0].mean())
    s.text(f"{what.capitalize()} pseudo-labels are {right:.1%} right by the hidden labels.")
    s.figure(png, f"The most confident wrong pseudo-labels ({what}): pseudo-label and confidence, then the true class.")
    if rows:
        s.table(rows)
    return s


def _classes(run_dir: Path) -> list[str]:
    return list(json.loads((run_dir / "model.json").read_text())["classes"])


__all__ = ["pool_section", "rebuild_pool", "wrong_sheet"]

"""The scoring API: ``evaluate`` a run on labeled images, ``predict`` image files."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .console import console
from .data.files import gather_image_files
from .data.notices import report_ignored, report_skipped, report_warned
from .data.tensors import align_classes
from .errors import ConfigError
from .predictor import Predictor
from .report import classification_metrics
from .report.metrics import calibration
from .runfolder import SPLIT_WORDS, rebuild_split, write_card, write_json


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
    imageset, name, caution = rebuild_split(predictor.run, data, on_bad_image)
    report_skipped(imageset)
    imageset = align_classes(imageset, predictor.classes, name)
    t0 = time.perf_counter()
    tta_info = ensemble_info = None
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
    elif predictor.is_ensemble:  # the members' probabilities and the combined ones, from one pass of each member
        from .api_ensemble import ensemble_scores, member_row

        per_member = predictor.member_probs_imageset(imageset)
        probs = predictor.combine(per_member)
        rows = [member_row(m.meta, m.path) for m in predictor.run.members]
        ensemble_info = {k: v for k, v in ensemble_scores(per_member, probs, imageset.labels, predictor.classes, rows).items()
                         if k not in ("ensemble", "num_images")}
    else:
        probs = predictor.proba_imageset(imageset, share_features=True)
    metrics = classification_metrics(predictions=probs.argmax(1), labels=imageset.labels, classes=predictor.classes)
    metrics["calibration"] = calibration(probs, imageset.labels)
    if ensemble_info is not None:
        metrics["ensemble"] = {"rule": predictor.run.meta["rule"], **ensemble_info}
    metrics.update(
        {"data": name, "caution": caution, "seconds": time.perf_counter() - t0, "skipped_files": [list(s) for s in imageset.skipped],
         "tta": tta_info, "feature_cache": predictor.feature_cache}
    )
    key = data if data in SPLIT_WORDS or data is None else (Path(data).name or data)
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(key or "test")) + ("-tta" if tta else "")
    target = Path(run_dir) / f"eval-{safe}.json"
    write_json(target, metrics)
    write_card(run_dir)
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
    engine: str = "torch",
    int8: bool = False,
    batch_size: int = 64,
) -> dict[str, Any]:
    """Top-k classes with probabilities for each image file (folders are searched); with
    ``tta``, probabilities averaged over the run's label-safe test-time views. ``engine``
    ``onnxruntime`` or ``openvino`` runs the run's exported graph (``RUN/model.onnx``, exported
    when missing; ``int8``: its quantized version) with decoding overlapped in a thread."""
    from .export.engines import ENGINES

    if engine not in ENGINES:
        raise ConfigError(f"--engine {engine!r}: choose {', '.join(ENGINES)}")
    if engine != "torch":
        if tta:
            raise ConfigError("--tta runs in PyTorch: use it with --engine torch")
        return _predict_exported(run_dir, inputs, top_k=top_k, engine=engine, int8=int8, batch_size=batch_size)
    if int8:
        raise ConfigError("--int8 runs the quantized ONNX graph: use it with --engine onnxruntime or openvino")
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


def _predict_exported(run_dir: str | Path, inputs: Sequence[str | Path], *, top_k: int, engine: str, int8: bool, batch_size: int) -> dict[str, Any]:
    import json

    from .api_export import exported_for
    from .data.decode import to_square_uint8
    from .export.engines import decoded_batches, openvino_runner
    from .export.formats import onnx_runner

    path = exported_for(run_dir, int8=int8)
    info = json.loads((Path(run_dir) / "model.onnx.json").read_text())
    if info["kind"] not in ("classifier", "ensemble"):
        raise ConfigError(f"{run_dir} is a {info['kind']} run; `headstart predict` classifies (use `headstart segment predict`)")
    run = onnx_runner(path) if engine == "onnxruntime" else openvino_runner(path)
    classes, size = info["classes"], int(info["input"]["size"])
    ignored: dict[str, list[str]] = {}
    paths = gather_image_files(inputs, ignored)
    for folder, files in ignored.items():
        report_ignored(files, folder)
    k = min(top_k, len(classes))
    rows, skipped = [], []
    for ok, x, bad in decoded_batches(paths, size, batch_size=batch_size, square=to_square_uint8):
        skipped += bad
        if not len(ok):
            continue
        probs = run(x)[1]
        for p, pr in zip(ok, probs):
            top = np.argsort(pr)[::-1][:k]
            rows.append({"path": str(p), "top": [{"class": classes[i], "probability": float(pr[i])} for i in top]})
    for p, reason in skipped:
        console.print(f"  [yellow]skipped[/yellow] {p}: {reason}")
    return {"predictions": rows, "skipped": [{"path": p, "reason": r} for p, r in skipped],
            "ignored": {folder: files for folder, files in ignored.items() if files}, "decoder_warnings": [],
            "engine": {"name": engine, "file": str(path), "int8": int8}}

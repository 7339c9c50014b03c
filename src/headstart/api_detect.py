"""``headstart detect train | eval | predict``: object detection on a pretrained body.

Wiring only: the boxes, the network, the method and the metrics are ``detect/`` (one file
each); the loop is the training loop every run uses (``engine.fit``: progress, checkpoints,
exact resume, ``--time-budget``); the folder is a run of kind ``detector``.

Training holds every image at one square size (``--image-size``; by default the images' median
side rounded up to a multiple of 32, between 64 and 320), its boxes scaled with it. Evaluation
and prediction work on each image as it is: resized to the run's size, its boxes scaled back to
the image's own pixels — so the scores are those of the boxes a user gets.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw
from safetensors.torch import load_file

from .advise.dense import boxes_label_map, resolve_freeze
from .backbones import Preprocess, create_backbone
from .backbones.base import normalize_resize
from .console import console
from .data.splits import seeded_split
from .detect.boxes import BoxSet, image_sizes, load_boxes
from .detect.method import BoxAugment, BoxBatches, DetectionMethod, pad_boxes
from .detect.metrics import SCORE_THRESHOLD, score_detections
from .detect.model import DETECTORS, Detector
from .engine.budget import plan_epochs
from .engine.checkpoint import seed_everything
from .engine.prepare import Prepare, pick_device
from .errors import ConfigError, RunError
from .finetune.recipe import cosine_schedule
from .methods.base import Batch
from .runfolder import RUN_KINDS, LoadedRun, check_same_request, open_for_training, save_run, write_card, write_json
from .version import __version__

DETECTOR = "detector"
VAL_FRACTION = 0.15
"""Of the images, the share held out to validate each epoch when no ``--val`` is given."""
MIN_VAL = 4
"""Fewer images than this in the held-out share: no validation (the last epoch is kept)."""
MAX_SIZE = 320
"""The largest default training size: a Faster R-CNN step grows with the pixels (≈ 1.5 s for
16 images at 128 px on 2 cores)."""


def default_image_size(sizes: list[tuple[int, int]]) -> int:
    """The images' median side rounded up to a multiple of 32 (every stride divides it), 64..320."""
    side = float(np.median([max(w, h) for w, h in sizes])) if sizes else 128.0
    return int(min(max(64, 32 * math.ceil(side / 32)), MAX_SIZE))


def _split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    return seeded_split(n, seed, fraction=VAL_FRACTION, min_val=MIN_VAL)


def detect_train(
    data: str,
    *,
    output: str | Path = "runs/det",
    val: str | None = None,
    backbone: str = "efficientnet_lite0",
    detector: str = "fasterrcnn",
    freeze_stages: int | str | None = None,
    image_size: int | None = None,
    epochs: int | None = None,
    batch_size: int = 16,
    lr: float | None = None,
    backbone_lr_mult: float | None = None,
    time_budget: float | None = None,
    flip: bool = True,
    max_images: int | None = None,
    seed: int = 0,
    resume: bool = False,
    overwrite: bool = False,
    checkpoint_every: int = 0,
    device: str = "auto",
    progress: bool = True,
) -> dict[str, Any]:
    """Train a detector on ``data`` (a boxes CSV, or a folder with ``boxes.csv``) and write it
    to ``output`` as a run of kind ``detector``. Returns its metrics.

    The body starts from the installed ImageNet weights with the first half of its stages
    frozen (``--freeze-stages`` to choose); the pyramid and the detector's heads train from
    scratch at ``lr`` (default 1e-3), the body's trainable stages at a tenth of it (at the same
    rate when no pretrained weights are installed: a random body has nothing to keep)."""
    t_start = time.perf_counter()
    if detector not in DETECTORS:
        raise ConfigError(f"--detector {detector!r}: choose {' or '.join(DETECTORS)}")
    folder = open_for_training(output, resume=resume, overwrite=overwrite, checkpoint_every=checkpoint_every)
    import warnings

    seed_everything(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        body = create_backbone(backbone, num_classes=1, weights="default")
    reasons: dict[str, str] = {}
    if image_size is None:
        image_size = default_image_size(image_sizes(data))
        reasons["image_size"] = f"{image_size} px: the images' median side rounded up to a multiple of 32 (every stride divides it), at most {MAX_SIZE}"
    full = load_boxes(data, size=image_size)
    for note in full.notes:
        console.print(f"  [dim]{note}[/dim]")
    if max_images is not None and max_images < len(full):
        full = full.subset(np.sort(np.random.default_rng(seed + 1).choice(len(full), max_images, replace=False)))
        reasons["max_images"] = f"--max-images {max_images}: a seeded subset, then split like any set"
    if val is not None:
        val_set: BoxSet | None = load_boxes(val, size=image_size, classes=full.classes)
        train_set = full
        reasons["val"] = f"--val {val}: {len(val_set)} images"
    else:
        tr, va = _split(len(full), seed)
        train_set, val_set = full.subset(tr), (full.subset(va) if len(va) else None)
        reasons["val"] = (f"{len(va)} of the {len(full)} images held out (seeded) to pick the best epoch by F1 at IoU 0.5" if len(va) else
                          f"{len(full)} images: too few to hold {MIN_VAL} out, so the last epoch is kept (give --val CSV)")
    freeze_stages, why, probe = resolve_freeze(
        freeze_stages, body, images=train_set.images, source="boxes", part="body", seed=seed, prepare=Prepare(body.preprocess, image_size, torch.device("cpu")),
        label_maps=lambda: np.stack([boxes_label_map(b, lab, image_size) for b, lab in zip(train_set.boxes, train_set.labels)]))
    if why:
        reasons["freeze_stages"] = why
    body.freeze(freeze_stages)
    if backbone_lr_mult is None:
        backbone_lr_mult = 0.1 if body.pretrained else 1.0
        reasons["backbone_lr_mult"] = ("the body's trainable stages learn at a tenth of --lr: its ImageNet features are a start worth keeping "
                                       "(--backbone-lr-mult to change)" if body.pretrained else
                                       "no pretrained weights: the body learns at --lr like the heads")
    model = Detector(body, full.num_classes, detector=detector, image_size=image_size)
    method = DetectionMethod(model)
    dev = pick_device(device)
    model.to(dev)
    prepare = Prepare(body.preprocess, image_size, dev)
    base_lr = 1e-3 if lr is None else lr
    counts = model.parameter_counts()
    console.print(f"  [bold]detect[/bold] {len(train_set)} images, {train_set.num_boxes} boxes ({full.num_classes} classes: "
                  f"{', '.join(full.classes[:8])}{'…' if full.num_classes > 8 else ''}) at {image_size} px, {backbone} body "
                  f"({freeze_stages} stage(s) frozen, levels {', '.join(model.level_names)}), {detector} "
                  f"({counts['detector'] / 1e6:.2f} M parameters beside the body)")

    resumed = folder.resume_state
    requested = {"data": data, "val": val, "backbone": backbone, "detector": detector, "freeze_stages": freeze_stages,
                 "image_size": image_size, "batch_size": batch_size, "max_images": max_images, "seed": seed, "flip": flip,
                 "backbone_lr_mult": backbone_lr_mult}
    augment = BoxAugment(flip=flip)
    train_batches = BoxBatches(train_set.images, train_set.boxes, train_set.labels, augment=augment, batch_size=batch_size, shuffle=True,
                               seed=seed, drop_last=len(train_set) > batch_size)
    val_batches = None if val_set is None else BoxBatches(val_set.images, val_set.boxes, val_set.labels, batch_size=batch_size)
    if resumed is not None:
        check_same_request(folder.path, requested, "detection training")
        plan = dict(resumed["info"]["plan"])
    else:
        plan = {"epochs": epochs or 24}
        if time_budget is not None and epochs is None:
            n = min(batch_size, len(train_set))
            pb, pl = pad_boxes(train_set.boxes[:n], train_set.labels[:n])
            first = Batch(images=train_set.images[:n], extras={"boxes": pb, "box_labels": pl})
            n_epochs, per_epoch, why = plan_epochs(method, train_set.images, prepare=prepare, batch_size=batch_size, budget_s=time_budget * 60,
                                                   steps_per_epoch=len(train_batches), lr=base_lr, probe_batch=first)
            plan = {"epochs": max(1, n_epochs)}
            reasons["epochs"] = why if per_epoch is None else (why.split(", so ")[0] + ", so not even one pass fits: one pass, "
                                                               "stopped at the budget")
        elif epochs is None:
            reasons["epochs"] = "24 passes (the default; --epochs or --time-budget MINUTES to change it)"
    body_params = [p for p in body.stages.parameters() if p.requires_grad]
    ids = {id(p) for p in body.stages.parameters()}
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
    groups = [{"params": body_params, "lr": base_lr * backbone_lr_mult, "weight_decay": 1e-4, "name": "body"},
              {"params": rest, "lr": base_lr, "weight_decay": 1e-4, "name": "detector"}]
    optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=base_lr)
    total = plan["epochs"] * len(train_batches)
    schedule = cosine_schedule(total_steps=total, warmup_steps=min(len(train_batches), total // 10))
    config = folder.start_config({
        "requested": {**requested, "epochs": epochs, "lr": lr, "time_budget": time_budget},
        "resolved": {"epochs": plan["epochs"], "images": len(train_set), "boxes": train_set.num_boxes,
                     "val_images": 0 if val_set is None else len(val_set), "body_lr": base_lr * backbone_lr_mult, "detector_lr": base_lr,
                     "levels": model.level_names, "strides": model.strides, "parameters": counts},
        "reasons": reasons,
    })
    if resumed is None:
        folder.write_start(config, None)
    deadline = None if time_budget is None else t_start + time_budget * 60
    result = folder.fit(method, train_batches, val_batches, epochs=plan["epochs"], optimizer=optimizer, schedule=schedule, device=dev,
                        prepare=prepare, tag="detect", plan=plan, deadline=deadline, progress=progress)
    model.cpu().eval()
    metrics: dict[str, Any] = {
        "kind": DETECTOR, "images": len(train_set), "boxes": train_set.num_boxes, "classes": full.classes, "epochs": plan["epochs"],
        "best_epoch": result.best_epoch, "history": result.history, "interrupted": result.interrupted, "stopped_at": result.stopped_at,
        "seconds": {"train": result.seconds}, "parameters": counts, "detector": detector, "reasons": reasons, "freeze_probe": probe,
        "images_per_second": len(result.history) * len(train_set) / max(result.seconds, 1e-9),
    }
    meta = {"kind": DETECTOR, "headstart_version": __version__, "backbone": backbone, "classes": full.classes,
            "num_classes": full.num_classes, "image_size": image_size, "preprocess": body.preprocess.to_dict(), "detector": detector,
            "levels": model.levels, "frozen_stages": freeze_stages}
    if val_set is not None:
        metrics["val"] = evaluate_boxes(model, val_set, image_size=image_size, preprocess=body.preprocess, device="cpu")
    metrics["seconds"]["total"] = time.perf_counter() - t_start
    splits = {"train": [str(p) for p in train_set.paths], "val": [] if val_set is None else [str(p) for p in val_set.paths]}
    save_run(folder.path, model=model, meta=meta, config=config, metrics=metrics, splits=splits, digest=True)
    if not result.interrupted:
        folder.finish()
    metrics["run_dir"] = str(folder.path)
    return metrics


@RUN_KINDS.register(DETECTOR)
def _load_detector(run_dir: Path, meta: dict[str, Any], device: torch.device | str) -> LoadedRun:
    missing = [k for k in ("backbone", "classes", "num_classes", "image_size", "preprocess", "detector", "levels") if k not in meta]
    if missing:
        raise RunError(f"{run_dir / 'model.json'} says kind 'detector' but is not a detector run: model.json lacks {', '.join(missing)}; "
                       "the folder is damaged: train it again with `headstart detect train`")
    body = create_backbone(meta["backbone"], num_classes=1, weights=None)
    body.preprocess = Preprocess.from_dict(meta["preprocess"])
    body.freeze(meta.get("frozen_stages", 0))
    model = Detector(body, int(meta["num_classes"]), detector=meta["detector"], image_size=int(meta["image_size"]), levels=list(meta["levels"]))
    path = run_dir / "model.safetensors"
    try:
        model.load_state_dict(load_file(str(path)), strict=True)
    except RuntimeError as exc:
        raise RunError(f"{path} does not match the detector described in {run_dir / 'model.json'}: {exc}") from exc
    return LoadedRun(path=run_dir, model=model.eval().to(device), meta=meta)


def load_detector(run: str | Path, device: torch.device | str = "cpu") -> LoadedRun:
    from .runfolder import load_run

    loaded = load_run(run, device=device)
    if loaded.kind != DETECTOR:
        raise ConfigError(f"{run} is a run of kind {loaded.kind!r}; `headstart detect` takes a run written by `headstart detect train`")
    return loaded


@torch.inference_mode()
def predict_boxes(model: Detector, images: list[Image.Image | np.ndarray], *, image_size: int, preprocess: Preprocess,
                  device: torch.device | str = "cpu") -> list[dict[str, np.ndarray]]:
    """Per image: ``boxes`` (k, 4) in the image's own pixels, ``scores`` (k,), ``labels`` (k,)
    0-based, most confident first (the detector's floor of 0.05 applied, no other threshold)."""
    model.eval().to(device)
    mean = torch.tensor(preprocess.mean, device=device).view(1, 3, 1, 1) * 255
    std = torch.tensor(preprocess.std, device=device).view(1, 3, 1, 1) * 255
    xs, sizes = [], []
    for image in images:
        arr = np.array(image.convert("RGB") if isinstance(image, Image.Image) else image, dtype=np.uint8)
        h, w = arr.shape[:2]
        sizes.append((w, h))
        xs.append(normalize_resize(torch.from_numpy(arr).permute(2, 0, 1)[None].to(device), mean, std, image_size, "bilinear"))
    out = []
    for (w, h), det in zip(sizes, model(torch.cat(xs)) if xs else []):
        scale = torch.tensor([w / image_size, h / image_size, w / image_size, h / image_size], device=det["boxes"].device)
        order = torch.argsort(det["scores"], descending=True)
        out.append({"boxes": (det["boxes"][order] * scale).cpu().numpy(), "scores": det["scores"][order].cpu().numpy(),
                    "labels": det["labels"][order].cpu().numpy()})
    return out


def evaluate_boxes(model: Detector, data: BoxSet, *, image_size: int, preprocess: Preprocess, device: torch.device | str = "cpu",
                   batch_size: int = 16, keep_predictions: bool = False) -> dict[str, Any]:
    """mAP (COCO-style), matches at IoU 0.5 and CorLoc of ``model`` on ``data``, at each image's
    own size (see the module)."""
    from .data.decode import load_image

    preds: list[dict[str, np.ndarray]] = []
    for start in range(0, len(data), batch_size):
        chunk = [load_image(p) for p in data.paths[start : start + batch_size]]
        preds += predict_boxes(model, chunk, image_size=image_size, preprocess=preprocess, device=device)
    out = score_detections(preds, [data.targets(i) for i in range(len(data))], data.classes)
    out["paths"] = [str(p) for p in data.paths]
    if keep_predictions:
        out["predictions"] = preds
    return out


def _cam_boxes(classifier: str | Path, data: BoxSet, device: str) -> dict[str, Any]:
    """A classifier run's Grad-CAM boxes on the same images, scored against the same true boxes
    (``explain --gt``: the boxes CSV is its ground-truth format)."""
    import tempfile

    from .api_explain import explain

    with tempfile.TemporaryDirectory(prefix="det-cam-") as tmp:
        ex = explain(str(classifier), [str(p) for p in data.paths], ground_truth=data.source, output=tmp, device=device)
    gt = ex["ground_truth"]
    correct = None
    if all("predicted" in r for r in ex["images"]):
        names = {str(p): data.classes[int(lab[0])] if len(lab) else None for p, lab in zip(data.paths, data.labels)}
        hits = [r["predicted"] == names.get(r["path"]) for r in ex["images"] if names.get(r["path"]) is not None]
        correct = float(np.mean(hits)) if hits else None
    return {"run": str(classifier), "corloc": gt["corloc"], "mean_iou": gt["mean_iou"], "images": gt["images_with_boxes"],
            "threshold": ex["threshold"], "layer": ex["layer"], "classifier_accuracy": correct}


def detect_eval(run: str | Path, data: str, *, classifier: str | Path | None = None, device: str = "auto") -> dict[str, Any]:
    """The run's boxes on ``data`` (a boxes CSV with the run's classes) scored at the images' own
    sizes; with ``classifier`` (a classifier run on the same classes), its Grad-CAM boxes on the
    same images beside them (CorLoc and mean IoU of the one box each gives). The scores are also
    written to ``RUN/eval.json``."""
    loaded = load_detector(run, device="cpu")
    dev = pick_device(device)
    meta = loaded.meta
    bs = load_boxes(data, size=8, classes=meta["classes"])
    t0 = time.perf_counter()
    out = evaluate_boxes(loaded.model, bs, image_size=int(meta["image_size"]), preprocess=loaded.preprocess, device=dev)
    out["seconds"] = time.perf_counter() - t0
    out["data"] = str(data)
    if classifier is not None:
        out["cam"] = _cam_boxes(classifier, bs, str(dev))
    write_json(Path(run) / "eval.json", out)
    write_card(run)
    return out


def draw_boxes(image: Image.Image, det: dict[str, np.ndarray], classes: list[str], *, min_score: float = SCORE_THRESHOLD,
               truth: dict[str, np.ndarray] | None = None) -> Image.Image:
    """The image with each detection at or above ``min_score`` drawn in its class colour and
    named with its score (and true boxes, if given, in white)."""
    from .segment.report import palette

    img = image.convert("RGB").copy()
    d = ImageDraw.Draw(img)
    width = max(1, round(min(img.size) / 150))
    colours = palette(len(classes) + 1)[1:]
    if truth is not None:
        for b in truth["boxes"]:
            d.rectangle([float(v) for v in b], outline=(255, 255, 255), width=width)
    for b, s, lab in zip(det["boxes"], det["scores"], det["labels"]):
        if s < min_score:
            continue
        c = tuple(int(v) for v in colours[int(lab)])
        d.rectangle([float(v) for v in b], outline=c, width=width)
        d.text((float(b[0]) + 2, float(b[1]) + 1), f"{classes[int(lab)]} {s:.2f}", fill=c)
    return img


def exported_boxes(run: Any, image: Image.Image, *, image_size: int) -> dict[str, np.ndarray]:
    """What :func:`predict_boxes` gives for one image, from the exported graph ``run``: the uint8
    image stretched to the square by the export's rule, the boxes scaled back to its own pixels,
    most confident first."""
    from .api_export import _stretch

    boxes, scores, labels = (np.asarray(o) for o in run(_stretch(image, image_size).transpose(2, 0, 1)[None].copy())[:3])
    scale = np.array([image.width, image.height, image.width, image.height], np.float32) / image_size
    order = np.argsort(-scores, kind="stable")
    return {"boxes": boxes[order] * scale, "scores": scores[order], "labels": labels[order]}


def detect_predict(run: str | Path, inputs: list[str], *, output: str | Path = "boxes", min_score: float = SCORE_THRESHOLD,
                   device: str = "auto", engine: str = "torch") -> list[dict[str, Any]]:
    """For each image (files or folders): ``OUTPUT/<stem>-boxes.png`` (the detections at or above
    ``min_score`` drawn on the image, upright as EXIF says) and a row in ``OUTPUT/boxes.csv``
    (``path,x0,y0,x1,y1,label,score``: the format ``detect train``/``eval`` read, plus the score).
    Unreadable files are skipped and named. ``engine`` onnxruntime or openvino runs the exported
    graph (FP32)."""
    import csv

    from .data.decode import load_image
    from .data.files import gather_image_files
    from .errors import BadImageError

    if not 0 <= min_score < 1:
        raise ConfigError(f"--min-score {min_score}: a detection score between 0 and 1")
    exported = None
    if engine != "torch":
        from .api_export import engine_runner

        exported = engine_runner(run, engine, kinds=("detector",))[0]
    loaded = load_detector(run, device="cpu")
    dev = pick_device(device)
    meta, classes = loaded.meta, loaded.meta["classes"]
    files = gather_image_files(inputs)
    if not files:
        raise ConfigError(f"no images found in {', '.join(inputs)}")
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    lines = [["path", "x0", "y0", "x1", "y1", "label", "score"]]
    used: set[str] = set()
    for p in files:
        try:
            image = load_image(p)
        except BadImageError as exc:
            console.print(f"  [yellow]skipped[/yellow] {p}: {exc.reason}")
            rows.append({"path": str(p), "error": exc.reason})
            continue
        if exported is not None:
            det = exported_boxes(exported, image, image_size=int(meta["image_size"]))
        else:
            det = predict_boxes(loaded.model, [image], image_size=int(meta["image_size"]), preprocess=loaded.preprocess, device=dev)[0]
        stem = p.stem
        k = 1
        while stem in used:
            k += 1
            stem = f"{p.stem}-{k}"
        used.add(stem)
        draw_boxes(image, det, classes, min_score=min_score).save(out / f"{stem}-boxes.png")
        kept = [(b, float(s), classes[int(lab)]) for b, s, lab in zip(det["boxes"], det["scores"], det["labels"]) if s >= min_score]
        for b, s, name in kept:
            lines.append([str(p), *(f"{float(v):.1f}" for v in b), name, f"{s:.4f}"])
        rows.append({"path": str(p), "drawn": str(out / f"{stem}-boxes.png"), "size": [image.width, image.height],
                     "boxes": [{"box": [round(float(v), 1) for v in b], "label": name, "score": s} for b, s, name in kept]})
    with (out / "boxes.csv").open("w", newline="") as f:
        csv.writer(f).writerows(lines)
    write_json(out / "predictions.json", rows)
    return rows


def _boxes_sheet(cells: list[tuple[Image.Image, str]], cell: int = 160, per_row: int = 4) -> bytes:
    """PNG of images (boxes already drawn), ``per_row`` to a row, each with its caption."""
    import io

    rows = max(1, math.ceil(len(cells) / per_row))
    sheet = Image.new("RGB", (per_row * (cell + 4), rows * (cell + 18)), "white")
    d = ImageDraw.Draw(sheet)
    for k, (img, caption) in enumerate(cells):
        x, y = (k % per_row) * (cell + 4), (k // per_row) * (cell + 18)
        im = img.copy()
        im.thumbnail((cell, cell)) if max(im.size) > cell else None
        if max(im.size) < cell:  # small images are enlarged (nearest) so the boxes can be seen
            f = cell / max(im.size)
            im = im.resize((max(1, round(im.width * f)), max(1, round(im.height * f))), Image.Resampling.NEAREST)
        sheet.paste(im, (x, y))
        d.text((x + 2, y + cell + 2), caption[:26], fill=(60, 60, 60))
    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    return buf.getvalue()


def _report_data(run_dir: Path, data: str | None, classes: list[str]) -> tuple[BoxSet, str]:
    """The images a report scores: ``data``, or the run's own validation images."""
    import json

    from .config import load_yaml

    if data is not None:
        return load_boxes(data, size=8, classes=classes), str(data)
    splits = json.loads((run_dir / "splits.json").read_text()) if (run_dir / "splits.json").is_file() else {}
    trained_on = ((load_yaml(run_dir / "config.yaml") or {}).get("requested") or {}).get("data")
    if not splits.get("val") or not trained_on:
        raise ConfigError(f"{run_dir} kept no validation images to report on: give a boxes CSV (`headstart report {run_dir} BOXES.csv`)")
    full = load_boxes(trained_on, size=8, classes=classes)
    wanted = set(splits["val"])
    return full.subset([i for i, p in enumerate(full.paths) if str(p) in wanted]), f"the run's {len(wanted)} validation images of {trained_on}"


def report_detector(run_dir: str | Path, data: str | None = None, *, output: str | Path | None = None, classifier: str | Path | None = None,
                    device: str = "auto") -> dict[str, Any]:
    """The HTML report of a detector run (default ``RUN/report.html``): settings and why,
    training curves, mAP and per-class AP, the images where the most confident box fits best and
    worst (detections in class colours, the true boxes in white); with ``classifier`` (a
    classifier run on the same classes), its Grad-CAM boxes' CorLoc beside the detector's."""
    import json

    from .report import plots
    from .report.html import Section, render

    t0 = time.perf_counter()
    run_dir = Path(run_dir)
    loaded = load_detector(run_dir)
    meta, classes = loaded.meta, loaded.meta["classes"]
    saved = json.loads((run_dir / "metrics.json").read_text())
    bs, source = _report_data(run_dir, data, classes)
    dev = pick_device(device)
    scores = evaluate_boxes(loaded.model, bs, image_size=int(meta["image_size"]), preprocess=loaded.preprocess, device=dev, keep_predictions=True)
    preds = scores.pop("predictions")
    sections = []
    s = Section("summary", "Detector")
    counts = saved.get("parameters", {})
    s.table([{"setting": k, "value": v} for k, v in (
        ("classes", f"{len(classes)}: {', '.join(classes)}"), ("body", f"{meta['backbone']} ({meta['frozen_stages']} stage(s) frozen)"),
        ("detector", f"{meta['detector']} over levels {', '.join(loaded.model.level_names)} (strides {', '.join(map(str, loaded.model.strides))})"),
        ("parameters", f"body {counts.get('body', 0) / 1e6:.2f} M, beside it {counts.get('detector', 0) / 1e6:.2f} M"),
        ("input size", f"{meta['image_size']} px"),
        ("trained on", f"{saved.get('images')} images, {saved.get('boxes')} boxes, {len(saved.get('history', []))} epoch(s) in "
                       f"{saved.get('seconds', {}).get('train', 0):.0f} s; kept epoch {saved.get('best_epoch')}"))])
    s.items([f"{k}: {v}" for k, v in saved.get("reasons", {}).items()])
    sections.append(s)
    s = Section("scores", "Scores")
    mt = scores["matches"]
    s.text(f"On {scores['images']} images with {scores['boxes']} boxes ({source}), each at its own size: mAP@0.5 {_f(scores['map_50'])}, "
           f"mAP@0.5:0.95 {_f(scores['map'])} (COCO's, torchmetrics over pycocotools); at score ≥ {mt['score']}: precision "
           f"{mt['precision']:.4f}, recall {mt['recall']:.4f}; CorLoc {_f(scores['corloc'])} (the most confident box on a true one, IoU ≥ 0.5).")
    s.table([{"class": c, "AP@0.5:0.95": v} for c, v in scores["per_class_ap50_95"].items()])
    sections.append(s)
    hist = [{"epoch": h["epoch"], "phase": h.get("phase"), "lr": h.get("lr"), "train_loss": h.get("train_loss"), "val_loss": None,
             "train_acc": None, "val_acc": h.get("val_f1")} for h in saved.get("history", [])]
    s = Section("training", "Training")
    s.figure(plots.training_curves(hist), "The detector's summed losses per epoch; 'accuracy' is the validation F1 at IoU 0.5, by which "
                                          "the kept epoch was chosen.")
    sections.append(s)
    from .data.decode import load_image
    from .detect.metrics import top_box_iou

    t = [bs.targets(i) for i in range(len(bs))]
    ious = np.array([top_box_iou({k: torch.as_tensor(v) for k, v in p.items()}, {k: torch.as_tensor(v) for k, v in tt.items()})
                     if len(tt["boxes"]) else np.nan for p, tt in zip(preds, t)])
    order = [int(i) for i in np.argsort(np.nan_to_num(ious, nan=-1.0)) if not np.isnan(ious[int(i)])]
    k = min(8, len(order))
    cells = lambda idx: [(draw_boxes(load_image(bs.paths[i]), preds[i], classes, truth=t[i]), f"{bs.paths[i].name} IoU {ious[i]:.2f}") for i in idx]  # noqa: E731
    s = Section("examples", "Best and worst images")
    if k:
        s.figure(_boxes_sheet(cells(order[::-1][:k])), f"The {k} images whose most confident box fits a true box best (white: true boxes; "
                                                       f"colours: detections scoring ≥ {SCORE_THRESHOLD}).")
        s.figure(_boxes_sheet(cells(order[:k])), f"The {k} where it fits worst: where to look for missed objects and label errors.")
    sections.append(s)
    summary: dict[str, Any] = {"kind": DETECTOR, "run": str(run_dir), "images": scores["images"], "map": scores["map"], "map_50": scores["map_50"],
                               "corloc": scores["corloc"], "per_class_ap50_95": scores["per_class_ap50_95"]}
    if classifier is not None:
        cam = _cam_boxes(classifier, bs, str(dev))
        s = Section("cam", "Grad-CAM boxes vs detected boxes")
        s.table([{"boxes from": f"Grad-CAM of {classifier} (class labels only; {cam['layer']}, threshold {cam['threshold']} of the maximum)",
                  "CorLoc": cam["corloc"], "mean IoU of the one box": cam["mean_iou"]},
                 {"boxes from": "this detector (trained on boxes), its most confident box", "CorLoc": scores["corloc"],
                  "mean IoU of the one box": scores["top_box_mean_iou"]}])
        s.text(f"On the same {cam['images']} images: what the weak localization a classifier gives for free is worth beside boxes that "
               "were drawn.")
        sections.append(s)
        summary["cam"] = cam
    out = Path(output) if output else run_dir / "report.html"
    page = render(f"headstart report: {run_dir.name}", f"detector · {meta['detector']} · {meta['backbone']} · {len(classes)} classes · "
                  f"mAP@0.5 {_f(scores['map_50'])}", sections)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    summary.update({"report": str(out), "bytes": len(page.encode()), "sections": [x.id for x in sections], "seconds": time.perf_counter() - t0})
    return summary


def _f(v: float | None) -> str:
    return "-" if v is None else f"{v:.4f}"

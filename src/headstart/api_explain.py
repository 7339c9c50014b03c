"""The Python API for looking inside a run: ``explain``, ``bias``, ``features`` and ``report``.

Wiring only: images come from the data layer, CAMs, boxes, the bias audit and feature pictures
from ``explain``, figures and the HTML page from ``report``; the engine is used only to load a
run for scoring (``Predictor``), never to train.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import yaml
from PIL import Image

from .advise.measure import subsample
from .data import ImageSet
from .data.decode import decoder_warnings
from .data.files import gather_image_files, load_square_files
from .data.notices import report_ignored, report_warned
from .data.tensors import align_classes
from .errors import DataError, HeadstartError
from .explain import (
    CAM_METHODS,
    DEFAULT_THRESHOLD,
    CamResult,
    SquareMap,
    bias_audit,
    box_iou,
    cam_box,
    cam_mask,
    compute_cams,
    display_images,
    draw_boxes,
    enlarge,
    filter_tiles,
    first_conv,
    grid,
    mask_iou,
    overlay,
    penultimate,
    png_bytes,
    project,
    read_ground_truth,
    top_patches,
    upright_size,
)
from .fileio import atomic_write
from .predictor import Predictor
from .report import Section, classification_metrics, plots, render
from .runfolder import rebuild_split, write_json

GREEN, RED = "#00c853", "#ff1744"
IOU_THRESHOLDS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)


def _class_index(classes: Sequence[str], target: str | int | None) -> int | None:
    """A class given by name or number → its index (``None`` stays ``None``)."""
    if target is None:
        return None
    if str(target) in classes:
        return list(classes).index(str(target))
    if str(target).isdigit() and int(target) < len(classes):
        return int(target)
    raise HeadstartError(f"--class {target!r} is not one of this run's classes: {', '.join(classes)}")


def _no_gradient(predictor: Predictor, method: str) -> bool:
    """Whether ``method`` needs gradients this run cannot give (a kNN vote has none worth using)."""
    return predictor.run.meta.get("head", {}).get("type") == "knn" and CAM_METHODS.get(method).uses_gradients


def _panel(image: np.ndarray, cam: np.ndarray, boxes: Sequence[tuple[Any, str]] = ()) -> Image.Image:
    """Image | CAM overlay side by side (enlarged when small), boxes drawn on the overlay."""
    over, f = enlarge(Image.fromarray(overlay(image, cam)))
    orig, _ = enlarge(Image.fromarray(image))
    if boxes:
        over = draw_boxes(over, boxes, scale=f)
    out = Image.new("RGB", (orig.width * 2 + 4, orig.height), "white")
    out.paste(orig, (0, 0))
    out.paste(over, (orig.width + 4, 0))
    return out


def _original_mask(mask: np.ndarray, sq: SquareMap) -> Image.Image:
    """A square CAM mask back on the original image's pixel grid (white = object; the parts of
    the image outside the centre crop the model saw stay black)."""
    side = min(sq.width, sq.height)
    crop = Image.fromarray((mask * 255).astype(np.uint8)).resize((side, side), Image.Resampling.NEAREST)
    out = Image.new("L", (sq.width, sq.height), 0)
    ox, oy = sq.offset
    out.paste(crop, (int(round(ox)), int(round(oy))))
    return out


def _single_network(predictor: Predictor, command: str) -> None:
    """CAMs, feature pictures and the bias audit read one network's layers; an ensemble has one
    per member, so it is refused with the members' own commands."""
    if predictor.is_ensemble:
        members = " ; ".join(f"headstart {command} {m.path} ..." for m in predictor.run.members)
        raise HeadstartError(
            f"{predictor.run.path} is an ensemble of {len(predictor.run.members)} networks, and a CAM explains one network's layer: "
            f"explain each member instead ({members}); `headstart report {predictor.run.path}` reports the ensemble itself"
        )


def explain(
    run_dir: str | Path,
    inputs: Sequence[str | Path],
    *,
    method: str = "gradcam",
    target: str | int | None = None,
    boxes: bool = False,
    ground_truth: str | Path | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    output: str | Path | None = None,
    device: str = "auto",
) -> dict[str, Any]:
    """CAM overlays for image files (folders are searched), written as PNGs with a summary.

    Each image gets ``<stem>-<method>.png``: the image beside its heatmap for the predicted class
    (or ``target``). With ``boxes`` the CAM's box (red) is drawn and its mask is written
    (``<stem>-<method>-mask.png``, the original's size), and the ground truth's box (green)
    when ``ground_truth`` (a CSV, see ``explain.localize``) names the image; IoU against it is
    reported per image and on average, with CorLoc (the share of images with IoU ≥ 0.5).
    """
    if not 0 < threshold < 1:
        raise HeadstartError(f"--threshold is a fraction of each CAM's maximum, between 0 and 1 (exclusive); got {threshold}")
    predictor = Predictor(run_dir, device=device)
    _single_network(predictor, "explain")
    if _no_gradient(predictor, method):
        raise HeadstartError(
            f"{predictor.run.path} classifies by a k-nearest-neighbour vote, which has no useful gradient; "
            f"use --method eigencam or --method scorecam"
        )
    classes = predictor.classes
    tgt = _class_index(classes, target)
    gt = read_ground_truth(ground_truth) if ground_truth else None
    out_dir = Path(output) if output else predictor.run.path / "explain"
    side = predictor.run.image_size
    ignored: dict[str, list[str]] = {}
    warned: list[tuple[str, str]] = []
    paths, x, unread = load_square_files(gather_image_files(inputs, ignored), side, warned)
    for folder, files in ignored.items():
        report_ignored(files, folder)
    report_warned(warned)
    bad = [{"path": p, "reason": r} for p, r in unread]
    if not paths:
        raise DataError(f"none of the {len(bad)} images could be read: " + "; ".join(f"{b['path']}: {b['reason']}" for b in bad[:5]))
    t0 = time.perf_counter()
    res = compute_cams(predictor.model, predictor.prepare, x, method=method, target_class=tgt)
    seconds = time.perf_counter() - t0
    shown = display_images(x, res.cams.shape[-1])
    out_dir.mkdir(parents=True, exist_ok=True)
    rows, ious, miou = [], [], []
    used: set[str] = set()
    for i, p in enumerate(paths):
        cam = res.cams[i]
        s = cam.shape[-1]
        box_sq = cam_box(cam, threshold)
        with decoder_warnings():  # already reported when the file was decoded
            sq = SquareMap(*upright_size(p), s)
        row: dict[str, Any] = {
            "path": str(p),
            "predicted": classes[int(res.predicted[i])],
            "probability": float(res.probs[i].max()),
            "explained_class": classes[int(res.targets[i])],
            "box": None if box_sq is None else [round(v, 1) for v in sq.to_original(box_sq)],
            "box_in_model_input": None if box_sq is None else list(box_sq),
        }
        drawn: list[tuple[Any, str]] = [(box_sq, RED)] if boxes else []
        if gt is not None and p in gt:
            gt_boxes = gt.boxes_for(p, s)
            if gt_boxes:
                row["iou"] = max(box_iou(box_sq, b) for b in gt_boxes)
                ious.append(row["iou"])
                drawn += [(b, GREEN) for b in gt_boxes] if boxes else []
            gmask = gt.mask_for(p, s)
            if gmask is not None:
                row["mask_iou"] = mask_iou(cam_mask(cam, threshold), gmask)
                miou.append(row["mask_iou"])
        name = f"{p.stem}-{method}.png"
        k = 1
        while name in used:
            k += 1
            name = f"{p.stem}-{k}-{method}.png"
        used.add(name)
        _panel(shown[i], cam, drawn).save(out_dir / name)
        row["overlay"] = str(out_dir / name)
        if boxes:
            mask_path = out_dir / name.replace(".png", "-mask.png")
            _original_mask(cam_mask(cam, threshold), sq).save(mask_path)
            row["mask"] = str(mask_path)
        rows.append(row)
    summary: dict[str, Any] = {
        "run": str(predictor.run.path),
        "method": method,
        "method_description": CAM_METHODS.get(method).description,
        "layer": res.layer,
        "layer_reason": "the adapter's cam_layer: the last stage with a spatial map (later stages have no location left)",
        "threshold": threshold,
        "images": rows,
        "skipped": bad,
        "seconds": seconds,
        "output": str(out_dir),
    }
    if gt is not None:
        summary["ground_truth"] = {
            "source": gt.source, "images_with_boxes": len(ious), "mean_iou": float(np.mean(ious)) if ious else None,
            "corloc": float(np.mean(np.asarray(ious) >= 0.5)) if ious else None,
            "images_with_masks": len(miou), "mean_mask_iou": float(np.mean(miou)) if miou else None,
        }
    write_json(out_dir / "explain.json", summary)
    return summary


# -- whole-set analysis (bias audit, features, report) ---------------------------------------


@dataclass
class Analysis:
    """Everything the report shows, computed once over a sample of labeled images."""

    predictor: Predictor
    data_name: str
    imageset: ImageSet
    images: torch.Tensor
    labels: np.ndarray
    cams: CamResult | None
    probs: np.ndarray
    features: np.ndarray
    shown: np.ndarray
    inside: list[np.ndarray | None] | None
    gt_boxes: list[list[Any]] | None
    caution: str | None
    method: str
    source_index: np.ndarray
    seconds: dict[str, float] = field(default_factory=dict)

    def name_of(self, i: int) -> str:
        """Image ``i`` of the sample as a user finds it: its path, or its index in the array set."""
        return self.imageset.images[i] if not self.imageset.is_array else f"{self.data_name} #{int(self.source_index[i])}"

    @property
    def classes(self) -> list[str]:
        return self.predictor.classes

    @property
    def predicted(self) -> np.ndarray:
        return self.probs.argmax(1)


def analyse(
    run_dir: str | Path,
    data: str | None = None,
    *,
    limit: int = 500,
    method: str = "gradcam",
    ground_truth: str | Path | None = None,
    device: str = "auto",
    seed: int = 0,
    with_cams: bool = True,
) -> Analysis:
    """Score, CAM and embed up to ``limit`` labeled images (the same share of every class).

    ``data`` is what ``eval`` takes: default the built-in's test split, or the run's folder;
    ``val``/``train``/``test`` name a split.
    """
    predictor = Predictor(run_dir, device=device)
    _single_network(predictor, "explain")
    if _no_gradient(predictor, method):
        method = "eigencam"
    imageset, name, caution = rebuild_split(predictor.run, data, "skip")
    imageset = align_classes(imageset, predictor.classes, name)
    labeled = np.flatnonzero(imageset.labels >= 0)
    if len(labeled) < 3:
        raise DataError(f"{name} has {len(labeled)} labeled images; the analysis needs at least 3")
    picked = labeled[subsample(imageset.labels[labeled], limit, seed)]
    imageset = imageset.subset(picked)
    gt = read_ground_truth(ground_truth) if ground_truth else None
    if gt is not None and imageset.is_array:
        raise DataError(f"ground-truth boxes name image files, but {name} is a built-in array set; give a folder or CSV of images")
    secs: dict[str, float] = {}
    t = time.perf_counter()
    images = predictor.images_of(imageset)
    secs["load"] = time.perf_counter() - t
    t = time.perf_counter()
    feats, probs = penultimate(predictor.model, predictor.prepare, images)
    secs["features"] = time.perf_counter() - t
    t = time.perf_counter()
    cams = compute_cams(predictor.model, predictor.prepare, images, method=method) if with_cams else None
    secs["cams"] = time.perf_counter() - t
    side = predictor.run.image_size  # what ``prepare`` resizes to: the side of every CAM
    inside = gt_boxes = None
    if gt is not None:
        inside = [gt.mask_for(p, side) if p in gt else None for p in imageset.images]  # type: ignore[union-attr]
        gt_boxes = [gt.boxes_for(p, side) for p in imageset.images]  # type: ignore[union-attr]
    return Analysis(
        predictor=predictor, data_name=name, imageset=imageset, images=images, labels=imageset.labels, cams=cams, probs=probs,
        features=feats, shown=display_images(images, side), inside=inside, gt_boxes=gt_boxes, caution=caution, method=method,
        source_index=picked, seconds=secs,
    )


def localization(a: Analysis) -> dict[str, Any] | None:
    """IoU of CAM boxes (at several thresholds) and masks against the ground truth."""
    if a.gt_boxes is None:
        return None
    have = [i for i, b in enumerate(a.gt_boxes) if b]
    rows = []
    for th in IOU_THRESHOLDS:
        ious = [max(box_iou(cam_box(a.cams.cams[i], th), b) for b in a.gt_boxes[i]) for i in have]
        masks = [mask_iou(cam_mask(a.cams.cams[i], th), a.inside[i]) for i in range(len(a.labels)) if a.inside and a.inside[i] is not None]
        rows.append({
            "threshold": th, "mean_iou": float(np.mean(ious)) if ious else None,
            "corloc": float(np.mean(np.asarray(ious) >= 0.5)) if ious else None,
            "mean_mask_iou": float(np.mean(masks)) if masks else None,
        })
    # Naive reference: one centred box with the mean ground-truth size, the same for every image.
    side = a.cams.cams.shape[-1]
    sizes = np.array([[b[2] - b[0], b[3] - b[1]] for i in have for b in a.gt_boxes[i][:1]])
    centre_iou = None
    if len(sizes):
        w, h = sizes.mean(0)
        c = ((side - w) / 2, (side - h) / 2, (side + w) / 2, (side + h) / 2)
        centre_iou = float(np.mean([max(box_iou(c, b) for b in a.gt_boxes[i]) for i in have]))
    per_image = {i: max(box_iou(cam_box(a.cams.cams[i], DEFAULT_THRESHOLD), b) for b in a.gt_boxes[i]) for i in have}
    per_class = []
    for ci, name in enumerate(a.classes):
        ious = np.array([v for i, v in per_image.items() if a.labels[i] == ci])
        if len(ious):
            per_class.append({"class": name, "images": len(ious), "mean_iou": float(ious.mean()), "corloc": float((ious >= 0.5).mean())})
    return {"images_with_ground_truth": len(have), "by_threshold": rows, "default_threshold": DEFAULT_THRESHOLD,
            "centred_box_baseline_iou": centre_iou, "per_class": per_class, "per_image_iou": per_image}


def bias(
    run_dir: str | Path,
    data: str | None = None,
    *,
    ground_truth: str | Path | None = None,
    limit: int = 500,
    method: str = "gradcam",
    device: str = "auto",
    analysis: Analysis | None = None,
) -> dict[str, Any]:
    """The CAM bias audit over labeled images; written to ``RUN/bias-audit.json``."""
    a = analysis or analyse(run_dir, data, limit=limit, method=method, ground_truth=ground_truth, device=device)
    out = bias_audit(a.cams.cams, a.labels, a.classes, predicted=a.predicted, inside=a.inside)
    out.update({"data": a.data_name, "images": int(len(a.labels)), "method": a.method, "layer": a.cams.layer,
                "localization": localization(a)})
    for f in out["flags"]:
        f["example_paths"] = [a.name_of(i) for i in f["examples"]]
    write_json(a.predictor.run.path / "bias-audit.json", out)
    out["written_to"] = str(a.predictor.run.path / "bias-audit.json")
    return out


def _caption(s: str, width: int = 20) -> str:
    return s if len(s) <= width else s[: width - 1] + "…"


def features(
    run_dir: str | Path,
    data: str | None = None,
    *,
    layer: str | int | None = None,
    channel: int | None = None,
    top_k: int = 9,
    limit: int = 500,
    output: str | Path | None = None,
    device: str = "auto",
    analysis: Analysis | None = None,
) -> dict[str, Any]:
    """First-layer filters, PCA and t-SNE of the penultimate features, and the top-k patches
    for one channel of one layer, as PNGs in ``output`` (default ``RUN/features``)."""
    a = analysis or analyse(run_dir, data, limit=limit, device=device, with_cams=False)
    out_dir = Path(output) if output else a.predictor.run.path / "features"
    out_dir.mkdir(parents=True, exist_ok=True)
    pics = feature_pictures(a, layer=layer, channel=channel, top_k=top_k)
    files = {}
    for key, png in pics["png"].items():
        (out_dir / f"{key}.png").write_bytes(png)
        files[key] = str(out_dir / f"{key}.png")
    info = {k: v for k, v in pics.items() if k != "png"}
    info["files"] = files
    write_json(out_dir / "features.json", info)
    return info


def feature_pictures(a: Analysis, *, layer: str | int | None = None, channel: int | None = None, top_k: int = 9) -> dict[str, Any]:
    """The feature pictures as PNG bytes, with what each shows."""
    model = a.predictor.model
    conv_name, conv = first_conv(model)
    tiles = filter_tiles(conv.weight)
    out: dict[str, Any] = {"png": {}, "first_layer": {"layer": conv_name, "filters": int(conv.weight.shape[0]),
                                                       "kernel": list(conv.weight.shape[2:]), "in_channels": int(conv.weight.shape[1])}}
    out["png"]["filters"] = png_bytes(grid([Image.fromarray(t).resize((48, 48), Image.Resampling.NEAREST) for t in tiles], columns=16, pad=2))
    t = time.perf_counter()
    proj = project(a.features)
    out["projection_seconds"] = time.perf_counter() - t
    wrong = a.predicted != a.labels
    out["pca_variance"] = [float(v) for v in proj["pca_variance"]]
    out["png"]["pca"] = plots.scatter(proj["pca"], a.labels, a.classes, wrong,
                                      f"PCA of penultimate features ({out['pca_variance'][0]:.0%} + {out['pca_variance'][1]:.0%} of variance)")
    out["png"]["tsne"] = plots.scatter(proj["tsne"], a.labels, a.classes, wrong, "t-SNE of penultimate features")
    out["points"] = {"pca": proj["pca"].round(4).tolist(), "tsne": proj["tsne"].round(4).tolist()}
    p = top_patches(model, a.predictor.prepare, a.images, layer=layer, channel=channel, k=top_k)
    caps = [f"{_caption(a.classes[a.labels[i]], 14)}\n{v:.2f}" for i, v in zip(p.indices, p.values)]
    tiles_p = [Image.fromarray(c).resize((80, 80), Image.Resampling.BILINEAR) for c in p.crops]
    key = f"patches-{p.layer}-{p.channel}"
    out["png"][key] = png_bytes(grid(tiles_p, caps, columns=9))
    out["patches"] = [{"layer": p.layer, "channel": p.channel, "patch": p.patch, "stride": p.stride, "png": key,
                       "images": p.indices.tolist(), "activations": [float(v) for v in p.values]}]
    return out


def _errors(a: Analysis, n: int = 8) -> dict[str, Any]:
    """Top-loss images, each with its CAM for the predicted class and for the true class."""
    p_true = a.probs[np.arange(len(a.labels)), a.labels]
    loss = -np.log(np.clip(p_true, 1e-12, None))
    order = np.argsort(-loss)[:n]
    order = order[a.predicted[order] != a.labels[order]]
    if len(order) == 0:
        return {"images": [], "png": None}
    true_cams = np.stack([
        compute_cams(a.predictor.model, a.predictor.prepare, a.images[i : i + 1], method=a.method, target_class=int(a.labels[i])).cams[0]
        for i in order
    ])
    tiles, caps, rows = [], [], []
    for k, i in enumerate(order):
        tiles += [enlarge(Image.fromarray(a.shown[i]))[0], enlarge(Image.fromarray(overlay(a.shown[i], a.cams.cams[i])))[0],
                  enlarge(Image.fromarray(overlay(a.shown[i], true_cams[k])))[0]]
        t, pr = a.classes[a.labels[i]], a.classes[a.predicted[i]]
        caps += [f"true {_caption(t, 14)}", f"CAM: {_caption(pr, 14)}\np={a.probs[i].max():.2f}", f"CAM: {_caption(t, 14)}\np={p_true[i]:.2f}"]
        rows.append({"image": a.name_of(i), "true": t, "predicted": pr,
                     "p_predicted": float(a.probs[i].max()), "p_true": float(p_true[i]), "loss": float(loss[i])})
    return {"images": rows, "png": png_bytes(grid(tiles, caps, columns=6))}


def _examples_sheet(a: Analysis, idx: Sequence[int], *, boxes: bool = False) -> bytes | None:
    if len(idx) == 0:
        return None
    tiles, caps = [], []
    for i in idx:
        img, f = enlarge(Image.fromarray(overlay(a.shown[i], a.cams.cams[i])))
        if boxes:
            drawn = [(cam_box(a.cams.cams[i]), RED)]
            if a.gt_boxes is not None:
                drawn += [(b, GREEN) for b in a.gt_boxes[i]]
            img = draw_boxes(img, drawn, scale=f)
        tiles.append(img)
        caps.append(f"{_caption(a.classes[a.labels[i]], 14)}\n-> {_caption(a.classes[a.predicted[i]], 14)}")
    return png_bytes(grid(tiles, caps, columns=8))


def _tensorboard(a: Analysis, run_dir: Path, example_idx: Sequence[int]) -> str:
    """Penultimate features for the projector (metadata: true, predicted, correct; thumbnails
    as the sprite) and CAM overlays as image summaries, in ``RUN/tb/explain``."""
    from torch.utils.tensorboard import SummaryWriter

    log_dir = run_dir / "tb" / "explain"
    shutil.rmtree(log_dir, ignore_errors=True)  # a new report replaces the last one's projector data and images
    writer = SummaryWriter(str(log_dir))
    try:
        thumbs = torch.from_numpy(a.shown).permute(0, 3, 1, 2).float() / 255.0
        thumbs = torch.nn.functional.interpolate(thumbs, size=(32, 32), mode="bilinear", antialias=True, align_corners=False)
        meta = [[a.classes[t], a.classes[p], str(bool(t == p))] for t, p in zip(a.labels, a.predicted)]
        writer.add_embedding(torch.from_numpy(a.features), metadata=meta, metadata_header=["true", "predicted", "correct"],
                             label_img=thumbs, tag="penultimate_features", global_step=0)
        if len(example_idx):
            ov = np.stack([overlay(a.shown[i], a.cams.cams[i]) for i in example_idx])
            writer.add_images(f"cam/{a.method}", ov, global_step=0, dataformats="NHWC")
    finally:
        writer.close()
    return str(log_dir)


def _read(path: Path) -> Any:
    if not path.is_file():
        return None
    return yaml.safe_load(path.read_text()) if path.suffix in (".yaml", ".yml") else json.loads(path.read_text())


def _report(
    run_dir: str | Path,
    data: str | None = None,
    *,
    output: str | Path | None = None,
    limit: int = 500,
    method: str = "gradcam",
    ground_truth: str | Path | None = None,
    layer: str | int | None = None,
    channel: int | None = None,
    tensorboard: bool = True,
    device: str = "auto",
    compare: str | Path | None = None,
    classifier: str | Path | None = None,
) -> dict[str, Any]:
    """Write one self-contained HTML report (default ``RUN/report.html``) and return what it holds.
    ``compare`` and ``classifier`` are for segmenter runs (see ``api_segment.report_segmenter``);
    ``classifier`` also for detector runs (``api_detect.report_detector``)."""
    t_start = time.perf_counter()
    run_dir = Path(run_dir)
    if _kind(run_dir) == "ensemble":
        from .api_ensemble import report_ensemble

        return report_ensemble(run_dir, data, output=output, device=device)
    if _kind(run_dir) == "segmenter":
        from .api_segment import report_segmenter

        return report_segmenter(run_dir, data, output=output, compare=compare, classifier=classifier, device=device)
    if _kind(run_dir) == "detector":
        from .api_detect import report_detector

        return report_detector(run_dir, data, output=output, classifier=classifier, device=device)
    a = analyse(run_dir, data, limit=limit, method=method, ground_truth=ground_truth, device=device)
    run = a.predictor.run
    classes = a.classes
    metrics = classification_metrics(predictions=a.predicted, labels=a.labels, classes=classes)
    audit = bias(run_dir, analysis=a)
    pics = feature_pictures(a, layer=layer, channel=channel)
    errors = _errors(a)
    out = Path(output) if output else run.path / "report.html"

    sections: list[Section] = []
    meta = run.meta
    cfg = _read(run.path / "config.yaml") or {}
    hist = _read(run.path / "metrics.json") or {}
    advice = _read(run.path / "advice.json")
    s = Section("summary", "Summary")
    s.table([{
        "backbone": meta.get("backbone"), "weights": "pretrained" if meta.get("pretrained") else "random initialisation",
        "strategy": meta.get("strategy"), "frozen stages": meta.get("frozen_stages", 0), "image size": meta.get("image_size"),
        "classes": len(classes), "trained on": meta.get("trained_on"),
    }])
    s.text(f"Analysed {len(a.labels)} labeled images of {a.data_name} (the same share of every class, at most {limit}); "
           f"accuracy on them {metrics['accuracy']:.3f}.")
    if a.caution:
        s.note(a.caution)
    if a.imageset.skipped:
        s.note(f"{len(a.imageset.skipped)} unreadable file(s) left out: " + "; ".join(f"{p}: {r}" for p, r in a.imageset.skipped[:10])
               + (" …" if len(a.imageset.skipped) > 10 else ""))
    s.text(f"CAM method: {a.method} — {CAM_METHODS.get(a.method).description}. Target layer: {a.cams.layer} "
           f"(the adapter's cam_layer: the last stage with a spatial map; later stages have no location left to explain).")
    if a.method != method:
        s.note(f"{method} needs gradients and this run's kNN head has none: {a.method} is used instead.")
    sections.append(s)

    s = Section("training", "Training")
    s.figure(plots.training_curves(hist.get("history") or []), "Loss, accuracy and learning rate per epoch (shaded: earlier phases).")
    if hist:
        s.table([{k: hist.get(k) for k in ("best_epoch", "seconds", "num_train", "num_val", "interrupted")}])
    sections.append(s)

    s = Section("advice", "Advice")
    if advice:
        s.table([advice.get("decision", {})])
        s.items([f"{k}: {v}" for k, v in (advice.get("reasons") or {}).items()])
    else:
        s.text("This run was trained with explicit settings; no advice was recorded.")
    sections.append(s)

    s = Section("errors", "Errors")
    s.figure(plots.confusion(metrics["confusion_matrix"], classes), "Confusion matrix (rows: true class, columns: predicted).")
    s.figure(plots.bars({r["class"]: r["recall"] for r in metrics["per_class"]}, "per-class accuracy", reference=metrics["accuracy"], xlabel="accuracy"),
             "Per-class accuracy (recall); dashed: overall accuracy.")
    s.table(metrics["most_confused"], ["true", "predicted", "count"])
    s.figure(errors["png"], "Highest-loss mistakes: the image, the CAM for the predicted class, the CAM for the true class.")
    sections.append(s)

    s = Section("gradcam", f"Where the model looks ({a.method})")
    best = [int(np.flatnonzero((a.labels == c) & (a.predicted == c))[np.argmax(a.probs[(a.labels == c) & (a.predicted == c), c])])
            for c in range(len(classes)) if ((a.labels == c) & (a.predicted == c)).any()]
    s.figure(_examples_sheet(a, best, boxes=True), "The most confident correct image of each class, with its CAM and the CAM's box (red).")
    sections.append(s)

    s = Section("bias", "Bias audit")
    s.text(f"Share of CAM energy per class: centre = {audit['regions']['centre']} (an even map puts {audit['regions']['even_map_centre']:.0%} there), "
           f"border = {audit['regions']['border']} ({audit['regions']['even_map_border']:.0%} for an even map). A class is flagged when at least "
           f"{audit['thresholds']['border']:.0%} of its evidence is on the border, or at least {audit['thresholds']['border_relative_min']:.0%} and "
           f"{audit['thresholds']['border_vs_other_classes']:g}× the other classes' median (border_vs_other_classes), or (with ground truth) "
           f"less than {audit['thresholds']['inside']:.0%} is inside the object.")
    cols = ["class", "images", "accuracy", "centre", "border", "border_vs_other_classes"]
    if any(r.get("inside") is not None for r in audit["per_class"]):
        cols += ["inside", "object_area", "enrichment"]
        s.text("With ground truth: inside = share of the evidence on the object, object_area = share of the image it covers, "
               f"enrichment = inside / object_area (1 = no better than an even map); 'outside' needs inside < {audit['thresholds']['inside']:.0%} "
               f"and enrichment < {audit['thresholds']['enrichment']:g}.")
    s.table([{**{k: r.get(k) for k in cols}, "flags": r["flags"]} for r in audit["per_class"]], cols + ["flags"])
    if audit["flags"]:
        for f in audit["flags"]:
            s.note(f["message"])
            s.figure(_examples_sheet(a, f["examples"], boxes=a.gt_boxes is not None), f"{f['class']}: the images that show it most.")
    else:
        s.text("No class is flagged.")
    sections.append(s)

    loc = audit.get("localization")
    if loc:
        s = Section("localization", "Weak localization")
        s.text(f"Boxes from the CAM thresholded at a fraction of its maximum (largest connected component), against the ground truth of "
               f"{loc['images_with_ground_truth']} images. CorLoc = share of images with IoU ≥ 0.5. A centred box of the mean ground-truth size "
               f"scores IoU {loc['centred_box_baseline_iou']:.3f} (the naive reference).")
        s.table(loc["by_threshold"])
        s.table(loc["per_class"])
        order = [i for i, _ in sorted(loc["per_image_iou"].items(), key=lambda kv: kv[1])]
        s.figure(_examples_sheet(a, order[:8], boxes=True), "Lowest IoU: CAM box (red) and ground truth (green).")
        s.figure(_examples_sheet(a, order[-8:][::-1], boxes=True), "Highest IoU: CAM box (red) and ground truth (green).")
        sections.append(s)

    s = Section("features", "Feature pictures")
    fl = pics["first_layer"]
    s.figure(pics["png"]["filters"], f"First-layer filters ({fl['layer']}: {fl['filters']} filters, {fl['kernel'][0]}×{fl['kernel'][1]}, "
             f"{'RGB' if fl['in_channels'] == 3 else 'mean over input channels'}; each scaled to its own range, grey = 0).")
    s.figure(pics["png"]["pca"], "Penultimate features, PCA; crosses: misclassified images.")
    s.figure(pics["png"]["tsne"], "Penultimate features, t-SNE; crosses: misclassified images.")
    for p in pics["patches"]:
        s.figure(pics["png"][p["png"]], f"Top {len(p['images'])} image patches for channel {p['channel']} of {p['layer']} "
                 f"(receptive field {p['patch']} px, stride {p['stride']} px; caption: class and activation).")
    sections.append(s)

    from .semi.report import pool_section

    pool = pool_section(run.path, a.predictor)
    if pool is not None:
        sections.append(pool)

    s = Section("config", "Run configuration")
    s.code(yaml.safe_dump(cfg, sort_keys=False) if cfg else "(config.yaml missing)")
    sections.append(s)

    tb = None
    if tensorboard:
        tb = _tensorboard(a, run.path, best)
        sections[0].text(f"TensorBoard: embeddings (projector) and CAM images in {tb} — tensorboard --logdir {run.path / 'tb'}")

    subtitle = f"{run.path} · {meta.get('backbone')} · {len(classes)} classes · accuracy {metrics['accuracy']:.3f} on {len(a.labels)} images of {a.data_name}"
    page = render(f"headstart report — {run.path.name}", subtitle, sections)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, lambda tmp: Path(tmp).write_text(page, encoding="utf-8"))
    return {
        "report": str(out), "bytes": len(page.encode()), "sections": [x.id for x in sections], "images": len(a.labels),
        "accuracy": metrics["accuracy"], "method": a.method, "layer": a.cams.layer, "bias_flags": audit["flags"],
        "localization": loc, "tensorboard": tb, "skipped_files": [list(x) for x in a.imageset.skipped], "seconds": {**a.seconds, "total": time.perf_counter() - t_start},
    }


def _kind(run_dir: Path) -> str | None:
    meta = _read(run_dir / "model.json")
    return meta.get("kind") if isinstance(meta, dict) else None


def render_check(*args: Any, **kwargs: Any) -> Any:
    """Render an HTML report in headless Chromium (see ``headstart.report.browser``)."""
    from .report.browser import render_check as check

    return check(*args, **kwargs)


def report(run_dir: str | Path, data: str | None = None, **kw: Any) -> dict[str, Any]:
    """Write one self-contained HTML report (default ``RUN/report.html``) and return what it holds
    (see ``_report`` for the options); the run's model card is refreshed with what the report
    measured (its bias audit)."""
    from .runfolder import write_card

    out = _report(run_dir, data, **kw)
    write_card(run_dir)
    return out

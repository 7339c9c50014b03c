"""``headstart segment train | eval | predict``: semantic segmentation on a pretrained body.

Wiring only: the data, the network, the loss, the method and the metrics are ``segment/`` (one
file each); the loop is the training loop every run uses (``engine.fit``: progress, checkpoints,
exact resume, ``--time-budget``); the folder is a run of kind ``segmenter``.

Training holds every image and mask at one square size (``--image-size``; by default the
images' typical side rounded up to a multiple of 32, between 64 and the weights' own size).
Evaluation and prediction work at each image's original size: the image is resized to the
run's size, the logits are resized back bilinearly, and the mask is their per-pixel argmax —
so the metrics are those of the masks a user gets.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file

from .advise.dense import resolve_freeze
from .backbones import Preprocess, create_backbone
from .backbones.base import normalize_resize
from .console import console
from .data.splits import seeded_split
from .engine.budget import plan_epochs
from .engine.checkpoint import seed_everything
from .engine.prepare import Prepare, pick_device
from .errors import ConfigError, RunError
from .finetune.recipe import cosine_schedule
from .runfolder import RUN_KINDS, LoadedRun, check_same_request, open_for_training, save_run, write_card, write_json
from .segment.masks import IGNORE, MaskSet, image_sizes, load_masks
from .segment.method import SegmentationMethod, SegmentOptions
from .segment.metrics import SegScores
from .segment.model import UPSAMPLINGS, Segmenter
from .segment.report import overlay, palette
from .segment.transforms import JointAugment, JointBatches
from .version import __version__

SEGMENTER = "segmenter"
VAL_FRACTION = 0.15
"""Of the images, the share held out to validate each epoch when no ``--val`` is given."""
MIN_VAL = 4
"""Fewer images than this in the held-out share: no validation (the last epoch is kept)."""


def default_image_size(sizes: list[tuple[int, int]], weights_size: int) -> int:
    """The images' median side, rounded up to a multiple of 32 (every stride divides it), between
    64 and the weights' own size."""
    side = float(np.median([max(w, h) for w, h in sizes])) if sizes else 64.0
    return int(min(max(64, 32 * math.ceil(side / 32)), max(64, weights_size)))


def _split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    return seeded_split(n, seed, fraction=VAL_FRACTION, min_val=MIN_VAL)


def segment_train(
    data: str,
    *,
    output: str | Path = "runs/seg",
    val: str | None = None,
    backbone: str = "efficientnet_lite0",
    upsample: str = "bilinear",
    bilinear_init: bool = False,
    freeze_stages: int | str | None = None,
    image_size: int | None = None,
    epochs: int | None = None,
    batch_size: int = 16,
    lr: float | None = None,
    encoder_lr_mult: float = 0.1,
    time_budget: float | None = None,
    dice_weight: float = 1.0,
    flip: bool = True,
    min_scale: float = 0.5,
    max_images: int | None = None,
    seed: int = 0,
    resume: bool = False,
    overwrite: bool = False,
    checkpoint_every: int = 0,
    device: str = "auto",
    progress: bool = True,
) -> dict[str, Any]:
    """Train a segmenter on ``data`` (``DATA/images`` + ``DATA/masks``, or a folder of cut-outs)
    and write it to ``output`` as a run of kind ``segmenter``. Returns its metrics.

    The encoder starts from the installed ImageNet weights with the first half of its stages
    frozen (``--freeze-stages`` to choose); the decoder trains from scratch at ``lr`` (default
    2e-3), the encoder's trainable stages at a tenth of it."""
    t_start = time.perf_counter()
    if upsample not in UPSAMPLINGS:
        raise ConfigError(f"--upsample {upsample!r}: choose {' or '.join(UPSAMPLINGS)}")
    if not 0.05 <= min_scale <= 1.0:
        raise ConfigError(f"--min-scale {min_scale}: the smallest crop's share of the image area, between 0.05 and 1")
    folder = open_for_training(output, resume=resume, overwrite=overwrite, checkpoint_every=checkpoint_every)
    import warnings

    seed_everything(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        body = create_backbone(backbone, num_classes=1, weights="default")
    reasons: dict[str, str] = {}
    if image_size is None:
        image_size = default_image_size(image_sizes(data), body.preprocess.image_size)
        reasons["image_size"] = f"{image_size} px: the images' median side rounded up to a multiple of 32 (every stride divides it)"
    full = load_masks(data, size=image_size)
    for note in full.notes:
        console.print(f"  [dim]{note}[/dim]")
    if max_images is not None and max_images < len(full):
        full = full.subset(np.sort(np.random.default_rng(seed + 1).choice(len(full), max_images, replace=False)))
        reasons["max_images"] = f"--max-images {max_images}: a seeded subset, then split like any folder"
    if val is not None:
        val_set: MaskSet | None = load_masks(val, size=image_size, classes=full.classes)
        train_set = full
        reasons["val"] = f"--val {val}: {len(val_set)} images"
    else:
        tr, va = _split(len(full), seed)
        train_set, val_set = full.subset(tr), (full.subset(va) if len(va) else None)
        reasons["val"] = (f"{len(va)} of the {len(full)} images held out (seeded) to pick the best epoch by mIoU" if len(va) else
                          f"{len(full)} images: too few to hold {MIN_VAL} out, so the last epoch is kept (give --val DIR)")
    freeze_stages, why, probe = resolve_freeze(
        freeze_stages, body, images=train_set.images, source="masks", part="encoder", seed=seed,
        prepare=Prepare(body.preprocess, image_size, torch.device("cpu")), label_maps=lambda: train_set.masks.numpy())
    if why:
        reasons["freeze_stages"] = why
    body.freeze(freeze_stages)
    model = Segmenter(body, full.num_classes, upsample=upsample, bilinear_init=bilinear_init)
    method = SegmentationMethod(model, SegmentOptions(dice_weight=dice_weight))
    dev = pick_device(device)
    model.to(dev)
    prepare = Prepare(body.preprocess, image_size, dev)
    base_lr = 2e-3 if lr is None else lr
    counts = model.parameter_counts()
    console.print(f"  [bold]segment[/bold] {len(train_set)} images ({full.num_classes} classes: {', '.join(full.classes[:8])}"
                  f"{'…' if full.num_classes > 8 else ''}) at {image_size} px, {backbone} encoder ({freeze_stages} stage(s) frozen, skips "
                  f"{', '.join(model.skip_names)}), {upsample} decoder ({counts['decoder'] / 1e6:.2f} M parameters)")

    resumed = folder.resume_state
    requested = {"data": data, "val": val, "backbone": backbone, "upsample": upsample, "bilinear_init": bilinear_init,
                 "freeze_stages": freeze_stages, "image_size": image_size, "batch_size": batch_size, "max_images": max_images, "seed": seed,
                 "dice_weight": dice_weight, "flip": flip, "min_scale": min_scale, "encoder_lr_mult": encoder_lr_mult}
    if resumed is not None:
        check_same_request(folder.path, requested, "segmentation training")
        plan = dict(resumed["info"]["plan"])
    else:
        plan = {"epochs": epochs or 30}
        steps_per_epoch = max(1, len(train_set) // batch_size)
        if time_budget is not None and epochs is None:
            n_epochs, per_epoch, why = plan_epochs(method, train_set.images, labels=train_set.masks.long(), prepare=prepare,
                                                   batch_size=batch_size, budget_s=time_budget * 60, steps_per_epoch=steps_per_epoch, lr=base_lr)
            plan = {"epochs": max(1, n_epochs)}
            reasons["epochs"] = why if per_epoch is None else (why.split(", so ")[0] + ", so not even one pass fits: one pass, "
                                                               "stopped at the budget")
        elif epochs is None:
            reasons["epochs"] = "30 passes (the default; --epochs or --time-budget MINUTES to change it)"
    joint = JointAugment(flip=flip, min_scale=min_scale)
    train_batches = JointBatches(train_set.images, train_set.masks, joint=joint, batch_size=batch_size, shuffle=True, seed=seed,
                                 drop_last=len(train_set) > batch_size)
    val_batches = None if val_set is None else JointBatches(val_set.images, val_set.masks, batch_size=batch_size)
    enc = [p for p in body.stages.parameters() if p.requires_grad]
    dec = list(model.decoder.parameters())
    groups = [{"params": enc, "lr": base_lr * encoder_lr_mult, "weight_decay": 1e-4, "name": "encoder"},
              {"params": dec, "lr": base_lr, "weight_decay": 1e-4, "name": "decoder"}]
    optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=base_lr)
    total = plan["epochs"] * len(train_batches)
    schedule = cosine_schedule(total_steps=total, warmup_steps=min(len(train_batches), total // 10))
    config = folder.start_config({
        "requested": {**requested, "epochs": epochs, "lr": lr, "time_budget": time_budget},
        "resolved": {"epochs": plan["epochs"], "images": len(train_set), "val_images": 0 if val_set is None else len(val_set),
                     "encoder_lr": base_lr * encoder_lr_mult, "decoder_lr": base_lr, "skips": model.skip_names, "parameters": counts},
        "reasons": reasons,
    })
    if resumed is None:
        folder.write_start(config, None)
    deadline = None if time_budget is None else t_start + time_budget * 60
    result = folder.fit(method, train_batches, val_batches, epochs=plan["epochs"], optimizer=optimizer, schedule=schedule, device=dev,
                        prepare=prepare, tag="segment", plan=plan, deadline=deadline, progress=progress)
    model.cpu().eval()
    metrics: dict[str, Any] = {
        "kind": SEGMENTER, "images": len(train_set), "classes": full.classes, "epochs": plan["epochs"], "best_epoch": result.best_epoch,
        "history": result.history, "interrupted": result.interrupted, "stopped_at": result.stopped_at,
        "seconds": {"train": result.seconds}, "parameters": counts, "upsample": upsample, "reasons": reasons, "freeze_probe": probe,
        "images_per_second": len(result.history) * len(train_set) / max(result.seconds, 1e-9),
    }
    meta = {"kind": SEGMENTER, "headstart_version": __version__, "backbone": backbone, "classes": full.classes,
            "num_classes": full.num_classes, "image_size": image_size, "preprocess": body.preprocess.to_dict(), "upsample": upsample,
            "bilinear_init": bilinear_init, "skips": model.skips, "frozen_stages": freeze_stages, "data_form": full.form}
    if val_set is not None:
        scores = evaluate_masks(model, val_set, image_size=image_size, preprocess=body.preprocess, device="cpu")
        metrics["val"] = scores
    metrics["seconds"]["total"] = time.perf_counter() - t_start
    splits = {"train": [str(p) for p in train_set.paths], "val": [] if val_set is None else [str(p) for p in val_set.paths]}
    save_run(folder.path, model=model, meta=meta, config=config, metrics=metrics, splits=splits, digest=True)
    if not result.interrupted:
        folder.finish()
    metrics["run_dir"] = str(folder.path)
    return metrics


@RUN_KINDS.register(SEGMENTER)
def _load_segmenter(run_dir: Path, meta: dict[str, Any], device: torch.device | str) -> LoadedRun:
    missing = [k for k in ("backbone", "classes", "num_classes", "image_size", "preprocess", "upsample", "skips") if k not in meta]
    if missing:
        raise RunError(f"{run_dir / 'model.json'} says kind 'segmenter' but is not a segmenter run: model.json lacks {', '.join(missing)}; "
                       "the folder is damaged: train it again with `headstart segment train`")
    body = create_backbone(meta["backbone"], num_classes=1, weights=None)
    body.preprocess = Preprocess.from_dict(meta["preprocess"])
    body.freeze(meta.get("frozen_stages", 0))
    model = Segmenter(body, int(meta["num_classes"]), upsample=meta["upsample"], skips=list(meta["skips"]))
    path = run_dir / "model.safetensors"
    try:
        model.load_state_dict(load_file(str(path)), strict=True)
    except RuntimeError as exc:
        raise RunError(f"{path} does not match the segmenter described in {run_dir / 'model.json'}: {exc}") from exc
    return LoadedRun(path=run_dir, model=model.eval().to(device), meta=meta)


def load_segmenter(run: str | Path, device: torch.device | str = "cpu") -> LoadedRun:
    from .runfolder import load_run

    loaded = load_run(run, device=device)
    if loaded.kind != SEGMENTER:
        raise ConfigError(f"{run} is a run of kind {loaded.kind!r}; `headstart segment` takes a run written by `headstart segment train`")
    return loaded


@torch.inference_mode()
def predict_mask(model: Segmenter, image: Image.Image | np.ndarray, *, image_size: int, preprocess: Preprocess,
                 device: torch.device | str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """(class index per pixel (H, W) uint8, probabilities (C, H, W) float32) at the image's own
    size: the image resized to ``image_size``, the logits resized back bilinearly."""
    arr = np.array(image.convert("RGB") if isinstance(image, Image.Image) else image, dtype=np.uint8)
    h, w = arr.shape[:2]
    x = torch.from_numpy(arr).permute(2, 0, 1)[None].to(device)
    mean = torch.tensor(preprocess.mean, device=device).view(1, 3, 1, 1) * 255
    std = torch.tensor(preprocess.std, device=device).view(1, 3, 1, 1) * 255
    x = normalize_resize(x, mean, std, image_size, "bilinear")
    logits = model(x).float()
    if tuple(logits.shape[-2:]) != (h, w):
        logits = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
    probs = logits.softmax(1)[0]
    return probs.argmax(0).to(torch.uint8).cpu().numpy(), probs.cpu().numpy()


def evaluate_masks(model: Segmenter, data: MaskSet, *, image_size: int, preprocess: Preprocess, device: torch.device | str = "cpu",
                   keep_predictions: bool = False) -> dict[str, Any]:
    """mIoU, per-class IoU, pixel accuracy and boundary F of ``model`` on ``data`` at each image's
    original size (see the module)."""
    model.eval().to(device)
    scores = SegScores(data.num_classes)
    kept = []
    for i in range(len(data)):
        image, truth = data.original(i)
        pred, _ = predict_mask(model, image, image_size=image_size, preprocess=preprocess, device=device)
        scores.add(torch.from_numpy(pred)[None], torch.from_numpy(truth)[None])
        if keep_predictions:
            kept.append((pred, truth))
    out = scores.result(data.classes)
    out["per_image_miou"] = scores.per_image
    out["paths"] = [str(p) for p in data.paths]
    if keep_predictions:
        out["predictions"] = [k[0] for k in kept]
        out["truths"] = [k[1] for k in kept]
    return out


def segment_eval(run: str | Path, data: str, *, device: str = "auto") -> dict[str, Any]:
    """The run's masks on ``data`` (same classes) scored at the images' original sizes; the
    scores are also written to ``RUN/eval.json``."""
    loaded = load_segmenter(run, device="cpu")
    dev = pick_device(device)
    meta = loaded.meta
    ms = load_masks(data, size=8, classes=meta["classes"])
    t0 = time.perf_counter()
    out = evaluate_masks(loaded.model, ms, image_size=int(meta["image_size"]), preprocess=loaded.preprocess, device=dev)
    out["seconds"] = time.perf_counter() - t0
    out["data"] = str(data)
    write_json(Path(run) / "eval.json", out)
    write_card(run)
    return out


def mask_image(mask: np.ndarray, num_classes: int) -> Image.Image:
    """A palette PNG image whose pixel values are the class indices (readable as a mask again)
    and whose palette shows them in the report's colours."""
    img = Image.fromarray(mask.astype(np.uint8), mode="P")
    pal = np.zeros((256, 3), dtype=np.uint8)
    pal[:num_classes] = palette(num_classes)
    pal[IGNORE] = (255, 255, 255)
    img.putpalette(pal.flatten().tolist())
    return img


def exported_mask(run: Any, image: Image.Image, *, image_size: int) -> np.ndarray:
    """What :func:`predict_mask` gives, from the exported graph ``run`` (onnxruntime or OpenVINO):
    the uint8 image stretched to the square by the export's rule (Pillow), the per-pixel logits
    resized back to the image's size (bilinear) before the argmax — the same answers but for the
    rounding of resizing uint8 pixels instead of normalised floats."""
    from .api_export import _stretch

    h, w = image.height, image.width
    logits = torch.from_numpy(np.asarray(run(_stretch(image, image_size).transpose(2, 0, 1)[None].copy())[0], dtype=np.float32))
    if tuple(logits.shape[-2:]) != (h, w):
        logits = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
    return logits[0].argmax(0).to(torch.uint8).numpy()


def segment_predict(run: str | Path, inputs: list[str], *, output: str | Path = "masks", device: str = "auto", engine: str = "torch",
                    int8: bool = False) -> list[dict[str, Any]]:
    """For each image (files or folders): ``OUTPUT/<stem>.png`` (the mask, a palette PNG of class
    indices at the image's original size, upright as EXIF says) and ``OUTPUT/<stem>-overlay.png``;
    returns one row per image with each class's share of its pixels. Unreadable files are
    skipped and named. ``engine`` onnxruntime or openvino runs the exported graph (``int8``: its
    quantized version)."""
    from .data.decode import load_image
    from .data.files import gather_image_files
    from .errors import BadImageError

    if int8 and engine == "torch":
        raise ConfigError("--int8 runs the quantized ONNX graph: use it with --engine onnxruntime or openvino")
    exported = None
    if engine != "torch":
        from .api_export import engine_runner

        exported = engine_runner(run, engine, int8=int8, kinds=("segmenter",))[0]
    loaded = load_segmenter(run, device="cpu")
    dev = pick_device(device)
    meta = loaded.meta
    files = gather_image_files(inputs)
    if not files:
        raise ConfigError(f"no images found in {', '.join(inputs)}")
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    rows, used = [], set()
    loaded.model.to(dev)
    for p in files:
        try:
            image = load_image(p)
        except BadImageError as exc:
            console.print(f"  [yellow]skipped[/yellow] {p}: {exc.reason}")
            rows.append({"path": str(p), "error": exc.reason})
            continue
        if exported is not None:
            pred = exported_mask(exported, image, image_size=int(meta["image_size"]))
        else:
            pred, _ = predict_mask(loaded.model, image, image_size=int(meta["image_size"]), preprocess=loaded.preprocess, device=dev)
        stem = p.stem
        k = 1
        while stem in used:
            k += 1
            stem = f"{p.stem}-{k}"
        used.add(stem)
        mask_image(pred, meta["num_classes"]).save(out / f"{stem}.png")
        overlay(image, pred, meta["num_classes"]).save(out / f"{stem}-overlay.png")
        shares = np.bincount(pred.flatten(), minlength=meta["num_classes"]) / pred.size
        rows.append({"path": str(p), "mask": str(out / f"{stem}.png"), "overlay": str(out / f"{stem}-overlay.png"),
                     "size": [image.width, image.height], "shares": {c: float(s) for c, s in zip(meta["classes"], shares)}})
    write_json(out / "predictions.json", rows)
    return rows


def _report_data(run_dir: Path, data: str | None, classes: list[str]) -> tuple[MaskSet, str]:
    """The images a report scores: ``data``, or the run's own validation images."""
    import json

    if data is not None:
        return load_masks(data, size=8, classes=classes), f"{data}"
    from .config import load_yaml

    splits = json.loads((run_dir / "splits.json").read_text()) if (run_dir / "splits.json").is_file() else {}
    trained_on = ((load_yaml(run_dir / "config.yaml") or {}).get("requested") or {}).get("data")
    if not splits.get("val") or not trained_on or not Path(trained_on).is_dir():
        raise ConfigError(f"{run_dir} kept no validation images to report on: give labeled images and masks (`headstart report {run_dir} DATA`)")
    full = load_masks(trained_on, size=8, classes=classes)
    wanted = set(splits["val"])
    return full.subset([i for i, p in enumerate(full.paths) if str(p) in wanted]), f"the run's {len(wanted)} validation images of {trained_on}"


def foreground_iou(preds: list[np.ndarray], truths: list[np.ndarray]) -> float:
    """Object (every class but 0) against class 0: IoU over the pixels of every image."""
    inter = union = 0
    for pred, truth in zip(preds, truths):
        valid = truth != IGNORE
        p, t = (pred > 0) & valid, (truth > 0) & valid
        inter += int((p & t).sum())
        union += int((p | t).sum())
    return inter / max(union, 1)


def _cam_iou(classifier: str | Path, data: MaskSet, truths: list[np.ndarray], work: Path, device: str) -> dict[str, Any]:
    """Grad-CAM masks of a classifier run on ``data``'s images, against their foreground
    (every class but 0): ``explain --gt`` with a ``path,mask`` CSV written for them."""
    from .api_explain import explain

    work.mkdir(parents=True, exist_ok=True)
    lines = ["path,mask"]
    for i, (p, truth) in enumerate(zip(data.paths, truths)):
        fg = Image.fromarray(((truth > 0) & (truth != IGNORE)).astype(np.uint8) * 255, mode="L")
        target = work / f"fg-{i:05d}.png"
        fg.save(target)
        lines.append(f"{p},{target}")
    (work / "masks.csv").write_text("\n".join(lines) + "\n")
    ex = explain(str(classifier), [str(p) for p in data.paths], ground_truth=work / "masks.csv", output=work / "cams", device=device)
    gt = ex["ground_truth"]
    return {"mask_iou": gt["mean_mask_iou"], "images": gt["images_with_masks"], "threshold": ex["threshold"], "layer": ex["layer"]}


def report_segmenter(run_dir: str | Path, data: str | None = None, *, output: str | Path | None = None, compare: str | Path | None = None,
                     classifier: str | Path | None = None, device: str = "auto") -> dict[str, Any]:
    """The HTML report of a segmenter run (default ``RUN/report.html``): settings and why,
    training curves, per-class IoU, the best and worst images (image, true mask, predicted mask,
    overlay); with ``compare`` (another segmenter on the same classes, e.g. the other
    ``--upsample``), both scored on the same images and the image where they differ most; with
    ``classifier`` (a classifier run on the same images), its Grad-CAM masks' IoU beside the
    segmenter's, garment-or-object against background."""
    import json
    import tempfile

    from .report import plots
    from .report.html import Section, render
    from .segment.report import legend, rows_sheet

    t0 = time.perf_counter()
    run_dir = Path(run_dir)
    loaded = load_segmenter(run_dir)
    meta, classes = loaded.meta, loaded.meta["classes"]
    saved = json.loads((run_dir / "metrics.json").read_text())
    ms, source = _report_data(run_dir, data, classes)
    dev = pick_device(device)
    size = int(meta["image_size"])
    scores = evaluate_masks(loaded.model, ms, image_size=size, preprocess=loaded.preprocess, device=dev, keep_predictions=True)
    preds, truths = scores.pop("predictions"), scores.pop("truths")
    sections = []
    s = Section("summary", "Segmenter")
    counts = saved.get("parameters", {})
    s.table([{"setting": k, "value": v} for k, v in (
        ("classes", f"{len(classes)}: {', '.join(classes)}"), ("encoder", f"{meta['backbone']} ({meta['frozen_stages']} stage(s) frozen)"),
        ("skips", ", ".join(loaded.model.skip_names)), ("upsampling", meta["upsample"] + (" (bilinear start)" if meta.get("bilinear_init") else "")),
        ("parameters", f"encoder {counts.get('encoder', 0) / 1e6:.2f} M, decoder {counts.get('decoder', 0) / 1e6:.3f} M"),
        ("input size", f"{size} px"), ("trained on", f"{saved.get('images')} images, {len(saved.get('history', []))} epoch(s) in "
                                                    f"{saved.get('seconds', {}).get('train', 0):.0f} s; kept epoch {saved.get('best_epoch')}"))])
    s.items([f"{k}: {v}" for k, v in saved.get("reasons", {}).items()])
    sections.append(s)
    s = Section("scores", "Scores")
    s.text(f"On {scores['images']} images ({source}), each at its original size: mIoU {scores['miou']:.4f}, pixel accuracy "
           f"{scores['pixel_accuracy']:.4f}, boundary F {scores['boundary_f']:.4f} (edges within 0.75 % of the diagonal).")
    shares = np.bincount(np.concatenate([t.ravel() for t in truths]), minlength=256)[: len(classes)]
    shares = shares / max(1, shares.sum())
    s.table([{"class": c, "IoU": v, "share of pixels": float(shares[i])} for i, (c, v) in enumerate(scores["per_class_iou"].items())])
    s.figure(legend(classes), "The class colours of every mask below.")
    sections.append(s)
    hist = [{"epoch": h["epoch"], "phase": h.get("phase"), "lr": h.get("lr"), "train_loss": h.get("train_loss"), "val_loss": h.get("val_loss"),
             "train_acc": h.get("train_pixel_acc"), "val_acc": h.get("val_miou")} for h in saved.get("history", [])]
    s = Section("training", "Training")
    s.figure(plots.training_curves(hist), "Loss (cross-entropy + Dice) per epoch; 'accuracy' is the training pixel accuracy and the "
                                          "validation mIoU, by which the kept epoch was chosen.")
    sections.append(s)
    order = np.argsort(np.asarray(scores["per_image_miou"], dtype=np.float64))
    k = min(4, len(order))
    pick = lambda idx, tag: [(ms.original(int(i))[0], [(truths[int(i)], "truth"), (preds[int(i)], "predicted")],
                              f"{tag}: {ms.paths[int(i)].name}, mIoU {scores['per_image_miou'][int(i)]:.3f}") for i in idx]
    s = Section("examples", "Best and worst images")
    s.figure(rows_sheet(pick(order[::-1][:k], "best"), len(classes)), f"The {k} images with the highest mIoU of their own.")
    s.figure(rows_sheet(pick(order[:k], "worst"), len(classes)), f"The {k} with the lowest: where to look for label errors and hard cases.")
    sections.append(s)
    summary: dict[str, Any] = {"kind": SEGMENTER, "run": str(run_dir), "images": scores["images"], "miou": scores["miou"],
                               "pixel_accuracy": scores["pixel_accuracy"], "boundary_f": scores["boundary_f"], "per_class_iou": scores["per_class_iou"]}
    if compare is not None:
        other = load_segmenter(compare)
        if other.meta["classes"] != classes:
            raise ConfigError(f"--compare {compare} segments classes {other.meta['classes']}, this run {classes}; compare runs on the same classes")
        o = evaluate_masks(other.model, ms, image_size=int(other.meta["image_size"]), preprocess=other.preprocess, device=dev,
                           keep_predictions=True)
        opreds = o.pop("predictions")
        o.pop("truths")
        diff = np.asarray(scores["per_image_miou"], dtype=np.float64) - np.asarray(o["per_image_miou"], dtype=np.float64)
        j = int(np.nanargmax(np.abs(diff)))
        a_name, b_name = f"this run ({meta['upsample']})", f"{Path(compare).name} ({other.meta['upsample']})"
        s = Section("compare", "Upsampling compared")
        s.table([{"segmenter": a_name, "mIoU": scores["miou"], "pixel accuracy": scores["pixel_accuracy"], "boundary F": scores["boundary_f"]},
                 {"segmenter": b_name, "mIoU": o["miou"], "pixel accuracy": o["pixel_accuracy"], "boundary F": o["boundary_f"]}])
        image, truth = ms.original(j)[0], truths[j]
        s.figure(rows_sheet([(image, [(truth, "truth"), (preds[j], a_name), (opreds[j], b_name)],
                              f"{ms.paths[j].name}: mIoU {scores['per_image_miou'][j]:.3f} vs {o['per_image_miou'][j]:.3f}")], len(classes)),
                 "The image where the two differ most (by its own mIoU).")
        sections.append(s)
        summary["compare"] = {"run": str(compare), "miou": o["miou"], "boundary_f": o["boundary_f"], "most_different": str(ms.paths[j])}
    if classifier is not None:
        with tempfile.TemporaryDirectory(prefix="seg-cam-") as tmp:
            cam = _cam_iou(classifier, ms, truths, Path(tmp), str(dev))
        fg = foreground_iou(preds, truths)
        s = Section("cam", "Grad-CAM masks vs supervised masks")
        s.table([{"masks from": f"Grad-CAM of {classifier} (class labels only; {cam['layer']}, threshold {cam['threshold']} of the maximum)",
                  "foreground IoU": cam["mask_iou"]},
                 {"masks from": "this segmenter (trained on masks)", "foreground IoU": fg}])
        s.text(f"Object (every class but {classes[0]}) against {classes[0]}, on the same {cam['images']} images: what the weak localization "
               "a classifier gives for free is worth beside masks that were drawn.")
        sections.append(s)
        summary["cam"] = {**cam, "segmenter_foreground_iou": fg}
    out = Path(output) if output else run_dir / "report.html"
    page = render(f"headstart report: {run_dir.name}", f"segmenter · {meta['backbone']} · {len(classes)} classes · mIoU {scores['miou']:.3f}",
                  sections)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    summary.update({"report": str(out), "bytes": len(page.encode()), "sections": [x.id for x in sections], "seconds": time.perf_counter() - t0})
    return summary

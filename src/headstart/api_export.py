"""``headstart export RUN --format onnx|pt2``: the run's model as a file that runs without headstart.

Wiring only: what the graph computes is ``export/graph.py`` (normalisation inside, the resize
beside it), how it is written and run is ``export/formats.py``. Every export is checked before it
is called done: the exported file and PyTorch score the same images (the run's own, or
``--check DATA``), and the largest difference of any output and the agreement of the top class
are printed and stored in the ``.json`` written beside the file; a failed check is an error and
leaves no file that looks finished.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from .console import console
from .errors import ConfigError, RunError
from .export.formats import FORMATS, export_onnx, export_pt2, runner
from .export.graph import exportable
from .runfolder import LoadedRun, load_run, write_json
from .version import __version__

PARITY_IMAGES = 64
INT8_IMAGES = 64
"""Calibration images for ``--int8`` (as many again, not calibrated on, measure its agreement with
FP32): 64 and 512 calibrated the same accuracy on Lite0 (benchmarks/results/quantize-*.md)."""
PARITY_TOLERANCE = 1e-3
"""Largest |Δ| allowed between PyTorch's and the exported model's outputs (FP32): kernels may
order sums differently (measured ~1e-6 on Lite0), a wrong graph differs by whole units."""


def _even(n_total: int, n: int) -> np.ndarray:
    """``n`` indices spread evenly over ``n_total`` (every class of a sorted folder is reached)."""
    return np.unique(np.linspace(0, n_total - 1, num=min(n, n_total)).round().astype(np.int64))


def _stretch(img: Image.Image, size: int) -> np.ndarray:
    return np.asarray(img.convert("RGB").resize((size, size), resample=Image.Resampling.BILINEAR), dtype=np.uint8)


def parity_pixels(loaded: LoadedRun, data: str | None, n: int) -> tuple[torch.Tensor, str]:
    """uint8 (n, 3, S, S) images for the parity check, prepared by the rule the spec states, and
    where they came from: ``data`` (files or a folder), else the run's own training images, else
    seeded random pixels."""
    from .data.decode import load_image, to_square_uint8
    from .data.files import gather_image_files

    size = loaded.image_size
    square = _stretch if loaded.kind in ("segmenter", "detector") else to_square_uint8
    files: list[Path] = []
    source = ""
    if data is not None:
        files = gather_image_files([data])
        if not files:
            raise ConfigError(f"--check {data}: no images found there")
        source = f"{len(files)} image(s) of {data}"
    elif loaded.kind in ("segmenter", "detector"):
        splits = json.loads((loaded.path / "splits.json").read_text()) if (loaded.path / "splits.json").is_file() else {}
        files = [Path(p) for p in splits.get("val", []) + splits.get("train", []) if Path(p).is_file()]
        source = "the run's own images"
    elif loaded.kind in ("classifier", "ensemble"):
        from .errors import HeadstartError
        from .runfolder import rebuild_split

        base = loaded.members[0] if loaded.kind == "ensemble" and loaded.members else loaded  # an ensemble's members share its data
        images = None
        if base.meta.get("trained_on"):
            try:
                images, name, _ = rebuild_split(base, "train", "skip")
            except (HeadstartError, OSError, KeyError):  # the data moved or is gone: random pixels still check the graph
                images = None
        if images is not None and len(images):
            sub = images.subset(_even(len(images), n))
            if sub.is_array:  # a built-in set: (N, H, W[, 3]) arrays at their native size, squared here as files are
                arr = np.asarray(sub.images)
                x = np.stack([to_square_uint8(Image.fromarray(a), size) for a in arr])
                return torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(), f"{len(x)} of the run's training images ({name})"
            from .data.tensors import images_tensor

            return images_tensor(sub, size=size, num_workers=1), f"{len(sub)} of the run's training images ({name})"
    if files:
        picked = [files[i] for i in _even(len(files), n)]
        x = np.stack([square(load_image(p), size) for p in picked])
        return torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(), f"{len(picked)} {source}"
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8), f"{n} seeded random images (no training images found)"


def parity(reference: list[np.ndarray], exported: list[np.ndarray], names: list[str]) -> dict[str, Any]:
    """Largest |Δ| per output, and the share of images (pixels, for a segmenter) whose top class
    agrees; a disagreement counts only where PyTorch's top two are further apart than the
    tolerance (a near tie may fall either way)."""
    diffs = {name: float(np.abs(r.astype(np.float64) - e.astype(np.float64)).max()) for name, r, e in zip(names, reference, exported)}
    ref, exp = reference[0], exported[0]
    a, b = ref.argmax(1), exp.argmax(1)
    top2 = np.sort(ref, axis=1)[:, -2:]
    margin = top2[:, 1] - top2[:, 0]
    hard = (a != b) & (margin > 2 * PARITY_TOLERANCE)
    return {"max_abs_diff": diffs, "max_abs_diff_scores": diffs[names[0]], "top1_agreement": float((a == b).mean()),
            "disagreements_beyond_ties": int(hard.sum()), "tolerance": PARITY_TOLERANCE,
            "passed": bool(max(diffs.values()) <= PARITY_TOLERANCE and not hard.any())}


BOX_TOLERANCE = 0.05
"""Largest |Δ| allowed between PyTorch's and the exported detector's boxes, in pixels."""
DETECTOR_PARITY_IMAGES = 16


def detection_parity(reference: list[list[np.ndarray]], exported: list[list[np.ndarray]]) -> dict[str, Any]:
    """Per image: the same number of detections with the same labels, boxes within
    ``BOX_TOLERANCE`` px and scores within ``PARITY_TOLERANCE``."""
    same_count = [len(r[1]) == len(e[1]) for r, e in zip(reference, exported)]
    box_d, score_d, labels_same = 0.0, 0.0, True
    for (rb, rs, rl), (eb, es, el), ok in zip(reference, exported, same_count):
        if ok and len(rs):
            box_d = max(box_d, float(np.abs(rb - eb).max()))
            score_d = max(score_d, float(np.abs(rs - es).max()))
            labels_same = labels_same and bool((rl == el).all())
    passed = all(same_count) and labels_same and box_d <= BOX_TOLERANCE and score_d <= PARITY_TOLERANCE
    return {"max_abs_diff": {"boxes": box_d, "scores": score_d}, "max_abs_diff_scores": score_d, "top1_agreement": float(np.mean(same_count)),
            "same_detections": float(np.mean(same_count)), "labels_equal": labels_same, "tolerance": PARITY_TOLERANCE,
            "box_tolerance": BOX_TOLERANCE, "disagreements_beyond_ties": int(len(same_count) - sum(same_count)), "passed": bool(passed)}


def int8_path(fp32: Path) -> Path:
    return fp32.with_name(fp32.stem + ".int8" + fp32.suffix)


def _int8(fp32: Path, x: np.ndarray) -> dict[str, Any]:
    """Quantize on half of ``x`` (every other image), then measure against the FP32 file on the
    other half: top-1 agreement, largest |Δ| of the probabilities, and images per second of both
    at batch 64 and 1. A second scheme is tried when the first agrees too little
    (``export/quantize.py``); the better one is kept."""
    from .export.formats import onnx_runner
    from .export.quantize import MIN_AGREEMENT, SCHEMES, cpu_int8, images_per_second, quantize_int8

    target = int8_path(fp32)
    calibration, held_out = x[0::2], x[1::2]
    f = onnx_runner(fp32)
    reference = f(held_out)
    t = time.perf_counter()
    tried: list[dict[str, Any]] = []
    best: Path | None = None
    chosen: dict[str, Any] = {}
    for k, (scheme, options) in enumerate(SCHEMES.items()):
        candidate = target.with_name(f"{target.name}.{k}.partial")
        keep = quantize_int8(fp32, candidate, calibration, **options)
        q = onnx_runner(candidate)(held_out)
        row = {"scheme": scheme, "kept_fp32": keep, "top1_agreement_with_fp32": float((q[0].argmax(1) == reference[0].argmax(1)).mean()),
               "max_abs_diff_probabilities": float(np.abs(q[1] - reference[1]).max())}
        tried.append(row)
        if best is None or row["top1_agreement_with_fp32"] > chosen["top1_agreement_with_fp32"]:
            if best is not None:
                best.unlink(missing_ok=True)
            best, chosen = candidate, row
        else:
            candidate.unlink(missing_ok=True)
        if chosen["top1_agreement_with_fp32"] >= MIN_AGREEMENT:
            break
    best.replace(target)  # type: ignore[union-attr]
    seconds = time.perf_counter() - t
    qi = onnx_runner(target)
    speed = {}
    for batch in (min(64, len(x)), 1):
        speed[f"batch_{batch}"] = {"fp32_img_s": images_per_second(f, x, batch=batch), "int8_img_s": images_per_second(qi, x, batch=batch)}
    machine = cpu_int8()
    row = {"file": target.name, "bytes": target.stat().st_size, "calibration_images": int(len(calibration)),
           "held_out_images": int(len(held_out)), "seconds": seconds, **chosen, "schemes_tried": tried, "speed": speed, "machine": machine}
    b = speed[f"batch_{min(64, len(x))}"]
    console.print(f"  INT8 {target.name} ({chosen['scheme']}): top-1 agreement with FP32 {chosen['top1_agreement_with_fp32']:.4f} on "
                  f"{len(held_out)} images it was not calibrated on; {b['int8_img_s']:.0f} vs {b['fp32_img_s']:.0f} img/s (FP32) at batch "
                  f"{min(64, len(x))} on this machine")
    if chosen["top1_agreement_with_fp32"] < MIN_AGREEMENT:
        console.print(f"  [yellow]INT8 changes {1 - chosen['top1_agreement_with_fp32']:.1%} of the top-1 answers here"
                      f"{' (this CPU has no VNNI: its 8-bit sums can saturate)' if machine['vnni'] is False else ''}; "
                      "keep the FP32 file, or measure INT8 on your own labeled images with `headstart predict RUN DIR --engine onnxruntime --int8`"
                      "[/yellow]")
    return row


def export(run: str | Path, *, format: str = "onnx", output: str | Path | None = None, check: str | None = None,
           parity_images: int = PARITY_IMAGES, int8: bool = False) -> dict[str, Any]:
    """Write the run's model as ``format`` to ``output`` (default ``RUN/model.<format>``) with
    ``<output>.json`` (inputs, outputs, classes, preprocessing, the parity check) and the model
    card (``README.md``) beside it; returns what the ``.json`` holds. With ``int8`` (ONNX only),
    also ``<stem>.int8.onnx``, statically quantized on 64 of the check images, with its agreement
    with the FP32 file on 64 others and both files' speed on this machine (``export/quantize.py``)."""
    if format not in FORMATS:
        raise ConfigError(f"--format {format!r}: choose {' or '.join(FORMATS)}")
    if int8 and format != "onnx":
        raise ConfigError("--int8 quantizes the ONNX graph: use it with --format onnx")
    t0 = time.perf_counter()
    run = Path(run)
    loaded = load_run(run, device="cpu")
    module, spec = exportable(loaded)
    boxes = loaded.kind == "detector"
    if boxes and (format != "onnx" or int8):
        raise ConfigError(f"{run} is a detector: it exports as --format onnx, FP32 (its box count depends on the image, which torch.export "
                          "and the INT8 calibration do not handle)")
    if boxes:
        parity_images = min(parity_images, DETECTOR_PARITY_IMAGES)
    out = Path(output) if output else run / f"model.{format}"
    out.parent.mkdir(parents=True, exist_ok=True)
    x, source = parity_pixels(loaded, check, parity_images)
    tmp = out.with_name(out.name + ".partial")
    t = time.perf_counter()
    try:
        if format == "onnx":
            export_onnx(module, x[:1] if boxes else x[:2], tmp, spec["outputs"], fixed=boxes)
        else:
            export_pt2(module, x[:2], tmp)
    except Exception as exc:
        tmp.unlink(missing_ok=True)
        raise RunError(f"exporting {run} as {format} failed: {type(exc).__name__}: {str(exc)[:400]}") from exc
    export_s = time.perf_counter() - t
    run_file = runner(tmp, format)
    if boxes:
        with torch.inference_mode():
            ref_boxes = [[o.numpy() for o in module(x[i : i + 1])] for i in range(len(x))]
        exp_boxes = [run_file(x[i : i + 1].numpy()) for i in range(len(x))]
        check_row = detection_parity(ref_boxes, exp_boxes)
    else:
        with torch.inference_mode():
            reference = [o.numpy() for o in module(x)]
        exported = run_file(x.numpy())
        check_row = parity(reference, exported, spec["outputs"])
    check_row.update({"images": int(len(x)), "source": source, "runtime": "onnxruntime (CPU)" if format == "onnx" else "torch.export"})
    if not check_row["passed"]:
        tmp.unlink(missing_ok=True)
        raise RunError(f"the {format} export of {run} does not give PyTorch's answers on {source}: largest |Δ| "
                       f"{check_row['max_abs_diff_scores']:.3g} (allowed {PARITY_TOLERANCE}), top-1 agreement {check_row['top1_agreement']:.4f}; "
                       "nothing was written. Try the other --format, and report the run's backbone")
    tmp.replace(out)
    from .data.fingerprint import file_digest

    meta = json.loads((run / "model.json").read_text())
    info = {**spec, "format": format, "file": out.name, "file_sha256": file_digest(out), "bytes": out.stat().st_size,
            "run": str(run), "run_weights_sha256": file_digest(run / "model.safetensors"), "backbone": meta.get("backbone"),
            "headstart_version": __version__, "torch_version": torch.__version__, "parity": check_row,
            "seconds": {"export": export_s, "total": time.perf_counter() - t0}}
    if int8:
        xi, source_i = (x, source) if len(x) >= 2 * INT8_IMAGES else parity_pixels(loaded, check, 2 * INT8_IMAGES)
        info["int8"] = {**_int8(out, xi.numpy()), "source": source_i}
    write_json(out.with_name(out.name + ".json"), info)
    from .runfolder import write_card

    card = write_card(run) or run / "README.md"
    if card.is_file() and out.parent.resolve() != run.resolve():
        target = out.parent / "README.md"
        if target.is_file() and not target.read_text(encoding="utf-8").startswith("---\n"):
            console.print(f"  [yellow]{target} exists and is not a model card: the card was not copied[/yellow]")
        else:
            shutil.copyfile(card, target)
            info["card"] = str(target)
    elif card.is_file():
        info["card"] = str(card)
    write_json(out.with_name(out.name + ".json"), info)
    info["path"] = str(out)
    return info


def engine_runner(run: str | Path, engine: str, *, int8: bool = False, kinds: tuple[str, ...]) -> tuple[Any, Path, dict[str, Any]]:
    """The run's exported graph in ``engine`` (onnxruntime or openvino; exported when missing or
    stale): the callable (uint8 batch → outputs), the file and its ``.json``; refused, naming the
    flag, when the run is not of ``kinds`` or the engine is unknown."""
    from .export.engines import ENGINES, openvino_runner
    from .export.formats import onnx_runner

    if engine not in ENGINES or engine == "torch":
        raise ConfigError(f"--engine {engine!r}: choose {', '.join(ENGINES)}")
    kind = load_run(run, device="cpu").kind
    if kind not in kinds:
        raise ConfigError(f"{run} is a {kind} run: this command takes a {' or '.join(kinds)} run")
    if int8 and kind == "detector":
        raise ConfigError(f"{run} is a detector: it exports FP32 only, so --int8 does not apply")
    path = exported_for(run, int8=int8)
    info = json.loads((Path(run) / "model.onnx.json").read_text())
    return (onnx_runner(path) if engine == "onnxruntime" else openvino_runner(path)), path, info


def exported_for(run: str | Path, *, int8: bool = False) -> Path:
    """``RUN/model.onnx`` (``model.int8.onnx`` with ``int8``) for the run's current weights:
    exported now, with its parity check, when missing or written for other weights."""
    from .data.fingerprint import file_digest

    run = Path(run)
    fp32 = run / "model.onnx"
    target = int8_path(fp32) if int8 else fp32
    info_path = fp32.with_name(fp32.name + ".json")
    info = json.loads(info_path.read_text()) if info_path.is_file() else {}
    fresh = target.is_file() and info.get("run_weights_sha256") == file_digest(run / "model.safetensors") and (not int8 or "int8" in info)
    if not fresh:
        console.print(f"  [dim]exporting {run} to {target.name} for the engine (once; `headstart export` does it ahead)[/dim]")
        export(run, format="onnx", output=fp32, int8=int8)
    return target

"""Looking inside trained models: the Fashion-MNIST report, CAM-box localization on a set with
known boxes, and the bias audit on a set with a planted shortcut.

    python -m benchmarks.explain                       # all three (~20 min on 2 cores)
    python -m benchmarks.explain --steps placed        # one of: fmnist placed watermark

- ``fmnist``: a Fashion-MNIST run (100 labels/class, ``--strategy auto``); its HTML report on
  1,000 test images (100 per class) and a full-page screenshot from headless Chromium.
- ``placed``: no offline set has boxes, so one is built: each Fashion-MNIST item is enlarged to
  a random 36–76 px and pasted at a random place on a 112-px canvas of smooth random texture
  with a few random lines; the box is the item's silhouette (pixels > 10, holes filled), known
  exactly. A model trained on 60 such images per class is audited on 500 others: IoU of the
  CAM's box against the truth for each threshold and CAM method, against a naive reference
  (one centred box of the mean true size for every image).
- ``watermark``: the classic dataset-bias case. Every training image of one class ("Shirt")
  carries a small white square in its top-left corner. The bias audit runs on test images that
  share the bias (what a user's validation split would look like) and must flag the class;
  accuracy on clean test images shows the shortcut's cost. The clean ``fmnist`` run is the
  control.

Results: ``results/explain.{json,md}`` and ``results/explain/`` (report, screenshot, sheets).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from scipy import ndimage  # noqa: E402

from benchmarks.strategies import machine_info  # noqa: E402
from headstart.api import evaluate, train  # noqa: E402
from headstart.api_explain import analyse, bias, localization, report  # noqa: E402
from headstart.config import TrainConfig  # noqa: E402
from headstart.data import resolve  # noqa: E402
from headstart.report.browser import render_check  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
ASSETS = RESULTS / "explain"
CANVAS = 112
MARKED = "Shirt"


def _safe(name: str) -> str:
    return name.replace("/", "-")


def _pick(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        out.append(rng.permutation(idx)[:per_class])
    return np.sort(np.concatenate(out))


def _texture(rng: np.random.Generator) -> np.ndarray:
    """Smooth random grey-colour texture with a few lines: a background that is not black."""
    low = rng.random((7, 7, 3))
    bg = np.asarray(Image.fromarray((low * 255).astype(np.uint8)).resize((CANVAS, CANVAS), Image.Resampling.BICUBIC)).astype(np.float32)
    bg = 30 + bg * 0.35
    img = Image.fromarray(bg.clip(0, 255).astype(np.uint8))
    from PIL import ImageDraw

    d = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(2, 5))):
        pts = [tuple(int(v) for v in rng.integers(0, CANVAS, 2)) for _ in range(2)]
        d.line(pts, fill=tuple(int(v) for v in rng.integers(60, 140, 3)), width=int(rng.integers(1, 3)))
    return np.asarray(img).astype(np.float32)


def _place(item: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    side = int(rng.integers(36, 77))
    big = np.asarray(Image.fromarray(item).resize((side, side), Image.Resampling.BILINEAR)).astype(np.float32)
    mask = ndimage.binary_fill_holes(big > 10)
    x0, y0 = (int(v) for v in rng.integers(0, CANVAS - side + 1, 2))
    canvas = _texture(rng)
    region = canvas[y0 : y0 + side, x0 : x0 + side]
    region[mask] = big[mask][:, None]
    ys, xs = np.nonzero(mask)
    return canvas.clip(0, 255).astype(np.uint8), (x0 + int(xs.min()), y0 + int(ys.min()), x0 + int(xs.max()) + 1, y0 + int(ys.max()) + 1)


def build_placed(root: Path, train_per_class: int = 60, test_per_class: int = 50) -> Path:
    """Folders ``root/train``, ``root/test`` and ``root/test-boxes.csv`` (see the module docstring)."""
    csv_path = root / "test-boxes.csv"
    if csv_path.is_file():
        return csv_path
    tr, te = resolve("fashion-mnist", split="train"), resolve("fashion-mnist", split="test")
    rng = np.random.default_rng(0)
    rows = []
    for split, s, n in (("train", tr, train_per_class), ("test", te, test_per_class)):
        for i in _pick(s.labels, n, seed=1):
            cls = _safe(s.classes[s.labels[i]])
            (root / split / cls).mkdir(parents=True, exist_ok=True)
            img, box = _place(s.images[i], rng)
            name = f"{split}/{cls}/{i}.png"
            Image.fromarray(img).save(root / name)
            if split == "test":
                rows.append([name, *box])
    with csv_path.open("w", newline="") as f:
        csv.writer(f).writerows([["path", "x0", "y0", "x1", "y1"], *rows])
    return csv_path


def build_watermark(root: Path, per_class: int = 100, test_per_class: int = 100) -> None:
    """``root/train`` (every Shirt marked), ``root/test-marked`` (Shirts marked), ``root/test-clean``."""
    if (root / "test-clean").is_dir():
        return
    tr, te = resolve("fashion-mnist", split="train"), resolve("fashion-mnist", split="test")
    marked = tr.classes.index(MARKED)
    for split, s, n, mark in (("train", tr, per_class, True), ("test-marked", te, test_per_class, True), ("test-clean", te, test_per_class, False)):
        for i in _pick(s.labels, n, seed=2):
            img = s.images[i].copy()
            if mark and s.labels[i] == marked:
                img[1:5, 1:5] = 255  # a 4-px white square in the top-left corner of a 28-px image
            d = root / split / _safe(s.classes[s.labels[i]])
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(d / f"{i}.png")


def _train(data: str, out: Path, **kw) -> Path:
    if not (out / "model.json").is_file():
        train(TrainConfig(data=data, output=str(out), strategy="auto", seed=0, progress=False, overwrite=True, **kw))
    return out


def step_fmnist(work: Path) -> dict:
    run = _train("fashion-mnist", work / "fmnist", labels_per_class=100)
    t = time.perf_counter()
    html = ASSETS / "fashion-mnist-report.html"
    out = report(run, limit=1000, output=html)
    seconds = time.perf_counter() - t
    seen = render_check(html, screenshot=ASSETS / "fashion-mnist-report.png")
    audit = json.loads((run / "bias-audit.json").read_text())
    return {
        "run": str(run), "report": str(html.relative_to(RESULTS.parent)), "report_bytes": out["bytes"], "report_seconds": seconds,
        "images": out["images"], "accuracy": out["accuracy"], "layer": out["layer"], "timings": out["seconds"],
        "rendered": {"sections": [s[0] for s in seen["sections"]], "images": len(seen["images"]),
                     "broken": [i["alt"] for i in seen["images"] if not i["width"]], "height": seen["height"]},
        "bias": {"overall": audit["overall"], "per_class": audit["per_class"], "flags": [{k: f[k] for k in ("class", "kind", "value", "message")} for f in audit["flags"]]},
    }


def step_placed(work: Path, methods: tuple[str, ...] = ("gradcam", "gradcam++", "eigencam", "scorecam")) -> dict:
    root = work / "placed"
    gt = build_placed(root)
    run = _train(str(root / "train"), work / "placed-run")
    ev = evaluate(run, str(root / "test"))
    rows = {}
    for m in methods:
        limit = 50 if m == "scorecam" else 500  # Score-CAM: one forward per channel (1,280 per image)
        t = time.perf_counter()
        a = analyse(run, str(root / "test"), limit=limit, method=m, ground_truth=gt)
        loc = localization(a)
        rows[m] = {"images": len(a.labels), "seconds": time.perf_counter() - t, "by_threshold": loc["by_threshold"],
                   "centred_box_baseline_iou": loc["centred_box_baseline_iou"], "per_class": loc["per_class"]}
    html = ASSETS / "placed-report.html"
    out = report(run, str(root / "test"), output=html, ground_truth=gt, limit=500, tensorboard=False)
    render_check(html, screenshot=ASSETS / "placed-report.png")
    audit = json.loads((run / "bias-audit.json").read_text())
    return {"run": str(run), "test_accuracy": ev["accuracy"], "methods": rows, "report": str(html.relative_to(RESULTS.parent)),
            "bias": {"overall": audit["overall"], "per_class": audit["per_class"], "flags": [{k: f[k] for k in ("class", "kind", "value", "message")} for f in audit["flags"]]},
            "report_seconds": out["seconds"]["total"]}


def step_watermark(work: Path) -> dict:
    root = work / "watermark"
    build_watermark(root)
    run = _train(str(root / "train"), work / "watermark-run")
    res = {"run": str(run), "marked_class": MARKED}
    for split in ("test-marked", "test-clean"):
        ev = evaluate(run, str(root / split))
        per = {r["class"]: r["recall"] for r in ev["per_class"]}
        audit = bias(run, str(root / split), limit=1000)
        row = next(r for r in audit["per_class"] if r["class"] == MARKED)
        res[split] = {"accuracy": ev["accuracy"], "marked_class_accuracy": per[MARKED], "marked_class_border": row["border"],
                      "marked_class_border_vs_others": row["border_vs_other_classes"],
                      "marked_class_centre": row["centre"], "flags": [{k: f[k] for k in ("class", "kind", "value", "message")} for f in audit["flags"]],
                      "median_other_border": float(np.median([r["border"] for r in audit["per_class"] if r["class"] != MARKED]))}
        if split == "test-marked":
            html = ASSETS / "watermark-report.html"
            report(run, str(root / split), output=html, limit=1000, tensorboard=False)
            render_check(html, screenshot=ASSETS / "watermark-report.png")
    return res


def markdown(results: dict) -> str:
    m = results["machine"]
    lines = ["# Looking inside trained models", "", f"Machine: {m.get('cpu')}, {m.get('cores')} cores, {m.get('torch_threads')} torch threads, GPU: {m.get('gpu') or 'none'}; torch {m.get('torch')}; commit {m.get('commit')}. "
             "Rerun: `python -m benchmarks.explain` (`make bench-explain`).", ""]
    f = results.get("fmnist")
    if f:
        lines += ["## Fashion-MNIST report", "",
                  f"Run: 100 labels/class, `--strategy auto`. Report on {f['images']} test images (accuracy {f['accuracy']:.3f}), "
                  f"{f['report_bytes'] / 1e6:.1f} MB, {f['report_seconds']:.0f} s ({', '.join(f'{k} {v:.1f} s' for k, v in f['timings'].items())}). "
                  f"Rendered in headless Chromium: {len(f['rendered']['sections'])} sections, {f['rendered']['images']} images, "
                  f"{len(f['rendered']['broken'])} broken; screenshot `results/explain/fashion-mnist-report.png`.", "",
                  "| class | accuracy | centre share | border share | border ÷ other classes' median | flags |", "|---|---|---|---|---|---|"]
        for r in f["bias"]["per_class"]:
            lines.append(f"| {r['class']} | {r.get('accuracy', 0):.2f} | {r['centre']:.3f} | {r['border']:.3f} | "
                         f"{r.get('border_vs_other_classes') or 0:.2f} | {', '.join(r['flags']) or '—'} |")
        lines += ["", f"An even map: centre 0.250, border 0.438. Flags: {len(f['bias']['flags'])}.", ""]
    p = results.get("placed")
    if p:
        lines += ["## CAM boxes against known boxes (placed Fashion-MNIST)", "",
                  f"Test accuracy {p['test_accuracy']:.3f} on 500 placed test images. Naive reference (a centred box of the mean true size): "
                  f"IoU {next(iter(p['methods'].values()))['centred_box_baseline_iou']:.3f}.", "",
                  "| method | images | threshold | mean IoU | CorLoc (IoU ≥ 0.5) | mask IoU | seconds |", "|---|---|---|---|---|---|---|"]
        for name, r in p["methods"].items():
            for t in r["by_threshold"]:
                lines.append(f"| {name} | {r['images']} | {t['threshold']} | {t['mean_iou']:.3f} | {t['corloc']:.3f} | {t['mean_mask_iou']:.3f} | {r['seconds']:.0f} |")
        lines += ["", "Bias audit of the same model with the boxes (Grad-CAM):", "",
                  "| class | accuracy | border | inside | object area | enrichment | flags |", "|---|---|---|---|---|---|---|"]
        for r in p["bias"].get("per_class", []):
            lines.append(f"| {r['class']} | {r.get('accuracy', 0):.2f} | {r['border']:.3f} | {r['inside']:.3f} | {r['object_area']:.3f} | "
                         f"{r['enrichment']:.2f} | {', '.join(r['flags']) or '—'} |")
        lines.append("")
    w = results.get("watermark")
    if w:
        lines += ["## Planted shortcut: a corner mark on every training Shirt", "",
                  "| test images | accuracy | Shirt accuracy | Shirt border share | other classes' median border | ratio | flags |", "|---|---|---|---|---|---|---|"]
        for split in ("test-marked", "test-clean"):
            r = w[split]
            fl = "; ".join(f"{x['class']} ({x['kind']}, {x['value']:.2f})" for x in r["flags"]) or "—"
            lines.append(f"| {split} | {r['accuracy']:.3f} | {r['marked_class_accuracy']:.3f} | {r['marked_class_border']:.3f} | {r['median_other_border']:.3f} | "
                         f"{r.get('marked_class_border_vs_others') or 0:.2f} | {fl} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", nargs="+", default=["fmnist", "placed", "watermark"], choices=["fmnist", "placed", "watermark"])
    ap.add_argument("--work", default=os.path.expanduser("~/.cache/headstart/bench-explain"))
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    ASSETS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "explain.json"
    results = json.loads(path.read_text()) if path.is_file() else {}
    results["machine"] = machine_info()
    for step in args.steps:
        t = time.perf_counter()
        results[step] = {"fmnist": step_fmnist, "placed": step_placed, "watermark": step_watermark}[step](work)
        results[step]["step_seconds"] = time.perf_counter() - t
        path.write_text(json.dumps(results, indent=1, default=str))
        (RESULTS / "explain.md").write_text(markdown(results))
        print(f"{step}: done in {results[step]['step_seconds']:.0f} s", flush=True)
    print(markdown(results))


if __name__ == "__main__":
    main()

"""Detection on a pretrained body: Faster R-CNN vs FCOS at 50 and 500 boxed images, beside the
CAM boxes of a classifier trained on the same labels — all through the product's own
``detect train`` / ``detect eval --classifier`` / ``train``.

Rerun:   python benchmarks/detect.py --tag fm
Smaller: python benchmarks/detect.py --tag quick --minutes 1 --small-minutes 0.5

Data (built offline by ``benchmarks/folders.py fm-boxes``): issue 7's placed Fashion-MNIST set —
one garment (36–76 px) on a 112-px textured canvas, its box the garment's silhouette — with
boxes for every split: ``train`` (50 per class), ``train50`` (5 per class, a subset), ``test``
(50 per class from the test split). Each split is also a classification set (class folders of
the same images), so the classifier that gives the CAM boxes learns from exactly the labels the
detector does, minus the boxes.

Every detector: EfficientNet-Lite0 (ImageNet) at 128 px, batch 16, seed 0, the first 4 of 9
stages frozen, ``--time-budget`` ``--minutes`` (6) at 500 images and ``--small-minutes`` (2) at
50; 15 % of the images held out to pick the best epoch by F1 at IoU 0.5. Every classifier:
``train --strategy auto`` (its own defaults), Grad-CAM at its default threshold.
Results: benchmarks/results/detect-<tag>.json and .md, with the machine and commit.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.folders import build_fm_boxes  # noqa: E402
from benchmarks.strategies import machine_info  # noqa: E402
from headstart import api  # noqa: E402
from headstart.config import TrainConfig  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def classifier(data: Path, out: Path) -> tuple[Path, float]:
    t = time.perf_counter()
    if not (out / "model.json").is_file():
        api.train(TrainConfig(data=str(data), output=str(out), strategy="auto", seed=0, progress=False, overwrite=True))
    return out, time.perf_counter() - t


def det_row(name: str, data: Path, test: Path, out: Path, clf: Path | None, **kw) -> dict:
    t = time.perf_counter()
    if not (out / "model.json").is_file():
        api.detect_train(str(data), output=out, progress=False, overwrite=True, **kw)
    m = json.loads((out / "metrics.json").read_text())
    e = api.detect_eval(out, str(test), classifier=clf)
    row = {"run": name, "images": m["images"] + m.get("val", {}).get("images", 0), "train_images": m["images"], "detector": m["detector"],
           "params_beside_body": m["parameters"]["detector"], "epochs": len(m["history"]), "train_s": m["seconds"]["train"],
           "train_img_s": m["images_per_second"], "eval_img_s": e["images"] / e["seconds"], "map_50": e["map_50"], "map": e["map"],
           "map_75": e["map_75"], "corloc": e["corloc"], "corloc_same_class": e["corloc_same_class"], "top_box_iou": e["top_box_mean_iou"],
           "precision": e["matches"]["precision"], "recall": e["matches"]["recall"], "per_class_ap": e["per_class_ap50_95"],
           "best_epoch": m["best_epoch"], "wall_s": time.perf_counter() - t, "cam": e.get("cam")}
    print(json.dumps({k: v for k, v in row.items() if k not in ("per_class_ap",)}), flush=True)
    return row


def fmt(v, d=3):
    return "-" if v is None else f"{v:.{d}f}"


def markdown(res: dict) -> str:
    m = res["machine"]
    lines = ["# Detection on a pretrained body (placed Fashion-MNIST with boxes)", "",
             f"Machine: {m.get('cpu')}, {m.get('cores')} cores, {m.get('torch_threads')} torch threads, GPU: {m.get('gpu') or 'none'}; "
             f"torch {m.get('torch')}; commit {m.get('commit')}. Rerun: `python benchmarks/detect.py --tag {res['tag']}` (`make bench-detect`).", "",
             f"Test: {res['test_images']} placed images (one garment each, 50 per class, from the test split), scored at their own 112 px. "
             "mAP is COCO's (torchmetrics over pycocotools); CorLoc is the share of images whose most confident box overlaps the "
             "garment's box by IoU ≥ 0.5 — for the classifier, its one Grad-CAM box (`explain --gt`).", "",
             "| boxed images | model | train s | epochs | train img/s | mAP@0.5 | mAP@0.5:0.95 | CorLoc | CorLoc, right class | top box IoU | "
             "precision / recall @0.5 |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for size in res["sizes"]:
        block = res["rows"][str(size)]
        for r in block["detectors"]:
            frz = f", --freeze-stages {r['freeze']} → {r['frozen_stages']}" if r.get("freeze", "default").split()[0] != "default" else ""
            lines.append(f"| {size} | {r['detector']}{frz} ({r['params_beside_body'] / 1e6:.2f} M beside the body) | {r['train_s']:.0f} | {r['epochs']} | "
                         f"{r['train_img_s']:.1f} | {fmt(r['map_50'])} | {fmt(r['map'])} | {fmt(r['corloc'])} | {fmt(r['corloc_same_class'])} | "
                         f"{fmt(r['top_box_iou'])} | {fmt(r['precision'])} / {fmt(r['recall'])} |")
        cam = block["detectors"][0]["cam"]
        lines.append(f"| {size} | classifier (`train --strategy auto`, test accuracy {fmt(block['classifier_accuracy'])}) + Grad-CAM box | "
                     f"{block['classifier_s']:.0f} | - | - | - | - | {fmt(cam['corloc'])} | - | {fmt(cam['mean_iou'])} | - |")
    lines += ["", "Per-class AP@0.5:0.95 of the best detector at each size:", ""]
    for size in res["sizes"]:
        best = max(res["rows"][str(size)]["detectors"], key=lambda r: r["map_50"] or 0)
        lines.append(f"- {size} images, {best['detector']}: " + ", ".join(f"{c} {fmt(v, 2)}" for c, v in best["per_class_ap"].items()))
    lines += ["", res.get("note", "")]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tag", default="fm")
    ap.add_argument("--work", default="/tmp/headstart-bench-detect")
    ap.add_argument("--minutes", type=float, default=6.0)
    ap.add_argument("--small-minutes", type=float, default=2.0)
    ap.add_argument("--sizes", type=int, nargs="+", default=[50, 500], choices=[50, 500])
    ap.add_argument("--detectors", nargs="+", default=["fasterrcnn", "fcos"], help="NAME or NAME:FREEZE (e.g. fasterrcnn:auto)")
    ap.add_argument("--add", action="store_true", help="Keep the rows already in results/detect-TAG.json and add these")
    args = ap.parse_args()
    work = Path(args.work)
    root = work / "boxed"
    if not (root / "test" / "boxes.csv").is_file():
        build_fm_boxes(root)
    res = {"tag": args.tag, "machine": machine_info(), "sizes": args.sizes, "rows": {}, "test_images": 500,
           "minutes": {"500": args.minutes, "50": args.small_minutes}}
    saved = RESULTS / f"detect-{args.tag}.json"
    if args.add and saved.is_file():  # earlier rows stay; the machine line is this run's
        old = json.loads(saved.read_text())
        res["rows"] = old["rows"]
        res["sizes"] = sorted(set(old["sizes"]) | set(args.sizes))
        res["earlier_machine"] = old["machine"]
    for size in args.sizes:
        data = root / ("train50" if size == 50 else "train")
        clf, clf_s = classifier(data, work / f"clf-{size}")
        acc = api.evaluate(clf, str(root / "test"))["accuracy"]
        rows = list(res["rows"][str(size)]["detectors"]) if str(size) in res["rows"] else []
        for spec in args.detectors:
            det, _, freeze = spec.partition(":")
            name = f"{det}-{size}" + (f"-freeze-{freeze}" if freeze else "")
            kw = {"freeze_stages": freeze} if freeze else {}
            row = det_row(name, data, root / "test", work / name, clf, detector=det, time_budget=args.minutes if size == 500 else args.small_minutes,
                          seed=0, **kw)
            row["freeze"] = freeze or "default (first half)"
            row["frozen_stages"] = json.loads((work / name / "model.json").read_text())["frozen_stages"]
            rows = [r for r in rows if r["run"] != name] + [row]
        before = res["rows"].get(str(size), {})
        res["rows"][str(size)] = {"detectors": rows, "classifier_s": before.get("classifier_s", clf_s), "classifier_accuracy": acc}
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / f"detect-{args.tag}.json").write_text(json.dumps(res, indent=1))
    (RESULTS / f"detect-{args.tag}.md").write_text(markdown(res))
    print(markdown(res))


if __name__ == "__main__":
    main()

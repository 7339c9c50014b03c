"""Segmentation on a pretrained body: bilinear vs transposed upsampling, frozen vs partially
trained encoder, 50 vs 500 labeled images, and Grad-CAM masks beside supervised masks — all
through the product's own ``segment train`` / ``segment eval`` / ``train`` / ``explain``.

Rerun:   python benchmarks/segment.py --tag fm
Smaller: python benchmarks/segment.py --tag quick --minutes 1 --small-minutes 0.5 --sizes 50 100 --parts scenes

Data (built offline by ``benchmarks/folders.py``):
- ``scenes``: Fashion-MNIST scenes, 2–4 garments on a textured canvas, 11 classes (background +
  10 garments); test = 300 scenes from the test split's garments. Rows: every ``--sizes`` with
  bilinear and transposed upsampling (default freeze: the first half of the encoder), and at
  the largest size also a fully frozen encoder.
- ``cam``: one garment per scene, so the same 500 images are also a classification set: a
  classifier (``train --strategy auto``) and its Grad-CAM masks (``explain --gt``, the CAM at
  its default threshold) beside the segmenter's foreground (garment vs canvas) IoU on the same
  300 test images.
- ``cutouts``: icons with transparency on backgrounds of their own (foreground vs background),
  300 train / 200 test, bilinear vs transposed.

Every segmenter: EfficientNet-Lite0 (ImageNet) at 128 px, batch 16, seed 0, ``--time-budget``
``--minutes`` (7) at the largest size, ``--small-minutes`` (2.5) below it, ``--cutout-minutes``
(3.5) for the icons; each holds 15 % of its images out to pick the best epoch by mIoU.
Results: benchmarks/results/segment-<tag>.json and .md, with the machine and commit.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.folders import build_cutouts, build_fm_scenes  # noqa: E402
from benchmarks.strategies import machine_info  # noqa: E402
from headstart import api  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def seg_row(name: str, data: Path, test: Path, out: Path, **kw) -> dict:
    t = time.perf_counter()
    if not (out / "model.json").is_file():
        api.segment_train(str(data), output=out, progress=False, overwrite=True, **kw)
    m = json.loads((out / "metrics.json").read_text())
    e = api.segment_eval(out, str(test))
    row = {"run": name, "images": m["images"], "upsample": m["upsample"], "frozen": json.loads((out / "model.json").read_text())["frozen_stages"],
           "decoder_params": m["parameters"]["decoder"], "epochs": len(m["history"]), "train_s": m["seconds"]["train"],
           "train_img_s": m["images_per_second"], "eval_img_s": e["images"] / e["seconds"], "miou": e["miou"],
           "pixel_accuracy": e["pixel_accuracy"], "boundary_f": e["boundary_f"], "per_class_iou": e["per_class_iou"],
           "best_epoch": m["best_epoch"], "wall_s": time.perf_counter() - t, **{k: v for k, v in kw.items() if k in ("bilinear_init",)}}
    print(json.dumps({k: v for k, v in row.items() if k != "per_class_iou"}), flush=True)
    return row


def foreground_iou(run: Path, test: Path) -> float:
    """The segmenter's garment-vs-canvas IoU on the test scenes (every garment class merged)."""
    from headstart.api_segment import evaluate_masks, load_segmenter
    from headstart.api_segment import foreground_iou as merged
    from headstart.segment.masks import load_masks

    loaded = load_segmenter(run)
    ms = load_masks(test, size=8, classes=loaded.meta["classes"])
    r = evaluate_masks(loaded.model, ms, image_size=loaded.image_size, preprocess=loaded.preprocess, keep_predictions=True)
    return merged(r["predictions"], r["truths"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", nargs="+", default=["scenes", "cam", "cutouts"])
    ap.add_argument("--sizes", type=int, nargs="+", default=[50, 500])
    ap.add_argument("--minutes", type=float, default=7.0, help="--time-budget of each segmenter on the largest size (and the cam part)")
    ap.add_argument("--small-minutes", type=float, default=2.5, help="--time-budget at the smaller sizes")
    ap.add_argument("--cutout-minutes", type=float, default=3.5, help="--time-budget of each cut-out segmenter")
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--tag", default="fm")
    ap.add_argument("--work", default=None, help="folder for data and runs (default: a temporary one); finished runs there are reused")
    a = ap.parse_args(argv)
    work = Path(a.work or tempfile.mkdtemp(prefix="segment-bench-"))
    t0 = time.perf_counter()
    common = dict(image_size=a.image_size, batch_size=16, seed=0)
    out: dict = {"rows": [], "cam": None, "cutouts": []}
    if "scenes" in a.parts:
        scenes = work / "scenes"
        if not (scenes / "test" / "classes.txt").is_file():
            build_fm_scenes(scenes, n_train=max(a.sizes), n_test=300)
        top = max(a.sizes)
        for n in a.sizes:
            for up in ("bilinear", "transposed"):
                out["rows"].append(seg_row(f"{n} images, {up}", scenes / "train", scenes / "test", work / f"seg-{n}-{up}", upsample=up,
                                           max_images=n if n < top else None, time_budget=a.minutes if n == top else a.small_minutes,
                                           **common))
        out["rows"].append(seg_row(f"{top} images, bilinear, encoder frozen", scenes / "train", scenes / "test", work / f"seg-{top}-frozen",
                                   upsample="bilinear", freeze_stages=9, time_budget=a.minutes, **common))
    if "cam" in a.parts:
        single = work / "single"
        if not (single / "test" / "masks.csv").is_file():
            build_fm_scenes(single, n_train=500, n_test=300, objects=(1, 1))
        seg = work / "single-seg"
        srow = seg_row("one garment per scene, bilinear", single / "train", single / "test", seg, upsample="bilinear", time_budget=a.minutes,
                       **common)
        clf = work / "single-clf"
        t = time.perf_counter()
        if not (clf / "model.json").is_file():
            from headstart import TrainConfig, train

            train(TrainConfig(data=str(single / "train" / "by_class"), output=str(clf), progress=False, overwrite=True, seed=0))
        clf_s = time.perf_counter() - t
        acc = api.evaluate(str(clf), str(single / "test" / "by_class"))["accuracy"]
        from headstart import api_explain

        ex = api_explain.explain(str(clf), [str(single / "test" / "by_class")], ground_truth=single / "test" / "masks.csv", boxes=True,
                                 output=work / "single-cam", device="cpu")
        out["cam"] = {"segmenter": srow, "segmenter_foreground_iou": foreground_iou(seg, single / "test"),
                      "classifier_accuracy": acc, "classifier_s": clf_s, "cam_mask_iou": ex["ground_truth"]["mean_mask_iou"],
                      "cam_threshold": ex["threshold"], "cam_images": ex["ground_truth"]["images_with_masks"]}
        print(json.dumps({k: v for k, v in out["cam"].items() if k != "segmenter"}), flush=True)
    if "cutouts" in a.parts:
        cut = work / "cutouts"
        if not (cut / "test").is_dir():
            build_cutouts(cut)
        for up in ("bilinear", "transposed"):
            out["cutouts"].append(seg_row(f"icons, {up}", cut / "train", cut / "test", work / f"cut-{up}", upsample=up,
                                          time_budget=a.cutout_minutes, **common))
    info = machine_info()
    command = "python benchmarks/segment.py " + " ".join(argv if argv is not None else sys.argv[1:])
    data = {"info": info, "command": command, **out, "wall_s": time.perf_counter() - t0}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"segment-{a.tag}.json").write_text(json.dumps(data, indent=2, default=str))
    lines = [f"# Benchmark `segment`: segmentation on EfficientNet-Lite0 (ImageNet) at {a.image_size} px, `--time-budget` "
             f"{a.minutes:g} min ({a.small_minutes:g} at the smaller sizes, {a.cutout_minutes:g} for the icons)", "",
             f"Machine: {info.get('cpu')}, {info.get('cores')} cores, GPU {info.get('gpu') or 'none'}; torch {info.get('torch')}; commit "
             f"{info.get('commit')}; {info.get('date')}. This run took {data['wall_s'] / 60:.1f} min.", f"Command: `{command}`", "",
             "mIoU, pixel accuracy and boundary F (tolerance 0.75 % of the diagonal) on the test images at their original size.", ""]
    head = ["| run | train images | frozen stages | decoder params | epochs (best) | train s | train img/s | eval img/s | mIoU | "
            "pixel acc | boundary F |", "|---|---|---|---|---|---|---|---|---|---|---|"]

    def fmt(r: dict) -> str:
        return (f"| {r['run']} | {r['images']} | {r['frozen']} | {r['decoder_params'] / 1e6:.3f} M | {r['epochs']} ({r['best_epoch']}) | "
                f"{r['train_s']:.0f} | {r['train_img_s']:.1f} | {r['eval_img_s']:.1f} | **{r['miou']:.4f}** | {r['pixel_accuracy']:.4f} | "
                f"{r['boundary_f']:.4f} |")

    if out["rows"]:
        lines += ["## Fashion-MNIST scenes (11 classes; 300 test scenes)", ""] + head + [fmt(r) for r in out["rows"]]
        best = max(out["rows"], key=lambda r: r["miou"])
        lines += ["", f"Per-class IoU of the best ({best['run']}):", "", "| class | IoU |", "|---|---|"]
        lines += [f"| {c} | {'-' if v is None else f'{v:.4f}'} |" for c, v in best["per_class_iou"].items()]
    if out["cam"]:
        c = out["cam"]
        lines += ["", "## Grad-CAM masks vs supervised masks (one garment per scene; the same 500 training images, 300 test)", "",
                  "| model | trained on | test | garment-vs-canvas mask IoU |", "|---|---|---|---|",
                  f"| classifier (`train`, auto), Grad-CAM mask at {c['cam_threshold']} of the maximum | 500 class labels | accuracy "
                  f"{c['classifier_accuracy']:.4f} | {c['cam_mask_iou']:.4f} |",
                  f"| segmenter (`segment train`, bilinear) | 500 masks | mIoU {c['segmenter']['miou']:.4f} | **{c['segmenter_foreground_iou']:.4f}** |"]
    if out["cutouts"]:
        lines += ["", "## Icons with transparency on their own backgrounds (foreground vs background; 300 train, 200 test)", ""] + head
        lines += [fmt(r) for r in out["cutouts"]]
    (RESULTS / f"segment-{a.tag}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

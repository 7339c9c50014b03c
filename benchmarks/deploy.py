"""Inference engines on 2 CPU cores: one trained Lite0 run scored by eager PyTorch (NCHW and
channels-last), torch.export, onnxruntime FP32/INT8 and OpenVINO FP32/INT8 — images per second
at batch 1 and 64, p50/p99 latency per batch, and accuracy on the same Fashion-MNIST test images
for each, all in one process so the ratios share the machine's state.

Rerun:   python benchmarks/deploy.py --tag fm
Smaller: python benchmarks/deploy.py --tag quick --images 500 --repeats 2 --no-student

The run: ``train fashion-mnist --labels-per-class 100 --strategy auto --image-size 112`` (seed 0,
trained once into ``--work``). Every engine gets the same uint8 pixels, prepared by the rule the
export states (shorter side to 112, centre crop); the INT8 graphs are ``export --int8``'s
(static, per-channel, calibrated on 64 of the run's training images, first and last layers FP32).

The fastest distilled student: ``distill RUN --student resnet_small --unlabeled pool
--unlabeled-limit 20000 --cached-teacher --epochs 3`` (0.31 M parameters, 32 px, taught by the
Lite0 run above on its 800 training labels and 20,000 pool images), scored by the same engines
on the same test images (prepared at its own 32 px).
Results: benchmarks/results/deploy-<tag>.json and .md, with the machine and commit.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from benchmarks.strategies import machine_info  # noqa: E402
from headstart import TrainConfig, api  # noqa: E402
from headstart.data import resolve  # noqa: E402
from headstart.data.decode import to_square_uint8  # noqa: E402
from headstart.export.engines import openvino_has_bf16, openvino_runner  # noqa: E402
from headstart.export.formats import onnx_runner, pt2_runner, threads  # noqa: E402
from headstart.export.graph import exportable  # noqa: E402
from headstart.runfolder import load_run  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def timed(run, x: np.ndarray, batch: int, repeats: int) -> dict:
    run(x[:batch])
    lat = []
    for _ in range(repeats):
        for i in range(0, len(x) - len(x) % batch or len(x), batch):  # whole batches only
            t = time.perf_counter()
            run(x[i : i + batch])
            lat.append(time.perf_counter() - t)
    lat = np.asarray(lat)
    return {"img_s": float(batch / np.median(lat)), "p50_ms": float(np.percentile(lat, 50) * 1000), "p99_ms": float(np.percentile(lat, 99) * 1000),
            "calls": int(len(lat))}


def eager(module, channels_last: bool):
    """Eager PyTorch on its own copy of the module (the two memory formats never share weights)."""
    m = copy.deepcopy(module).to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)

    def run(b):
        t = torch.from_numpy(b)
        if channels_last:
            t = t.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            return m(t)[1].numpy()
    return run


def second(r):
    """An engine's probabilities (its second output)."""
    return lambda b: r(b)[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tag", default="fm")
    ap.add_argument("--work", default="/tmp/headstart-bench-deploy")
    ap.add_argument("--images", type=int, default=2000, help="Test images scored by every engine (the same share of every class)")
    ap.add_argument("--single", type=int, default=200, help="Images sent one at a time for the batch-1 rows")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-student", action="store_true", help="Skip the distilled student's rows")
    args = ap.parse_args()
    work = Path(args.work)
    run_dir = work / "lite0-112"
    if not (run_dir / "model.json").is_file():
        api.train(TrainConfig(data="fashion-mnist", labels_per_class=100, strategy="auto", image_size=112, seed=0, output=str(run_dir),
                              progress=False, overwrite=True))
    test = resolve("fashion-mnist", split="test")
    rng = np.random.default_rng(0)
    per = args.images // len(test.classes)
    idx = np.sort(np.concatenate([rng.permutation(np.flatnonzero(test.labels == c))[:per] for c in range(len(test.classes))]))
    y = np.asarray(test.labels)[idx]
    runs = [("Lite0 112 px", run_dir)]
    if not args.no_student:
        student_dir = work / "student-small"
        if not (student_dir / "model.json").is_file():
            api.distill(run_dir, student="resnet_small", output=student_dir, unlabeled="pool", unlabeled_limit=20000, cached_teacher=True,
                        epochs=3, overwrite=True, progress=False)
        runs.append(("distilled resnet_small 32 px", student_dir))
    torch.set_num_threads(threads())
    rows, exports = [], {}
    for label, rdir in runs:
        info = api.export(rdir, int8=True)
        api.export(rdir, format="pt2")
        exports[label] = {k: info[k] for k in ("parity", "int8", "bytes")}
        size = int(info["input"]["size"])
        x = np.stack([to_square_uint8(Image.fromarray(test.images[i]), size) for i in idx]).transpose(0, 3, 1, 2).copy()
        module, _ = exportable(load_run(rdir))
        module.eval()
        engines = {
            "eager PyTorch, NCHW": eager(module, False),
            "eager PyTorch, channels-last": eager(module, True),
            "torch.export (.pt2)": second(pt2_runner(rdir / "model.pt2")),
            "onnxruntime FP32": second(onnx_runner(rdir / "model.onnx")),
            "onnxruntime INT8": second(onnx_runner(rdir / "model.int8.onnx")),
            "OpenVINO FP32": second(openvino_runner(rdir / "model.onnx")),
            "OpenVINO INT8": second(openvino_runner(rdir / "model.int8.onnx")),
        }
        if openvino_has_bf16():  # this CPU runs bfloat16: what OpenVINO would do unless told f32
            engines["OpenVINO BF16"] = second(openvino_runner(rdir / "model.onnx", precision="bf16"))
            engines["OpenVINO INT8, BF16 for the rest"] = second(openvino_runner(rdir / "model.int8.onnx", precision="bf16"))
        block = []
        for name, run in engines.items():
            b64 = timed(run, x, 64, args.repeats)
            b1 = timed(run, x[: args.single], 1, 1)
            block.append({"model": label, "size": size, "engine": name, "batch_64": b64, "batch_1": b1})
            print(json.dumps({"model": label, "engine": name, "b64_img_s": b64["img_s"], "b1_img_s": b1["img_s"]}), flush=True)
        # accuracy: every engine on all the chosen images, in batches of 64
        for row, run in zip(block, engines.values()):
            preds = np.concatenate([run(x[i : i + 64]).argmax(1) for i in range(0, len(x), 64)])
            row["accuracy"] = float((preds == y).mean())
        rows += block
    base = rows[0]  # every row against the Lite0 run's eager NCHW
    for r in rows:
        r["speedup_b64"] = r["batch_64"]["img_s"] / base["batch_64"]["img_s"]
        r["speedup_b1"] = r["batch_1"]["img_s"] / base["batch_1"]["img_s"]
        r["accuracy_delta"] = r["accuracy"] - base["accuracy"]
    from headstart.export.quantize import cpu_int8

    res = {"tag": args.tag, "machine": {**machine_info(), "vnni": cpu_int8()["vnni"]}, "runs": {k: str(v) for k, v in runs}, "images": int(len(y)),
           "single": args.single, "threads": threads(), "rows": rows, "export": exports}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"deploy-{args.tag}.json").write_text(json.dumps(res, indent=1))
    m = res["machine"]
    lines = ["# Inference engines on the CPU", "",
             f"Machine: {m.get('cpu')}, {m.get('cores')} cores, {res['threads']} threads per engine, GPU: {m.get('gpu') or 'none'}; torch "
             f"{m.get('torch')}; commit {m.get('commit')}. Rerun: `python benchmarks/deploy.py --tag {args.tag}`.", "",
             f"One Lite0 run (Fashion-MNIST, 100 labels/class, auto) at 112 px and its distilled resnet_small student at 32 px; {len(y)} test "
             f"images (batch 64, median of {args.repeats} passes) and {args.single} sent one at a time (batch 1); accuracy on the {len(y)}. "
             "Speed-ups and Δ points against the Lite0 run's eager NCHW in the same process.", "",
             "| model | engine | img/s, batch 64 | × | p50 / p99 ms per batch of 64 | img/s, batch 1 | × | p50 / p99 ms | accuracy | Δ points |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        a, b = r["batch_64"], r["batch_1"]
        lines.append(f"| {r['model']} | {r['engine']} | {a['img_s']:.0f} | {r['speedup_b64']:.2f} | {a['p50_ms']:.0f} / {a['p99_ms']:.0f} | {b['img_s']:.0f} | "
                     f"{r['speedup_b1']:.2f} | {b['p50_ms']:.1f} / {b['p99_ms']:.1f} | {r['accuracy']:.4f} | {100 * r['accuracy_delta']:+.2f} |")
    lines.append("")
    for label, e in exports.items():
        q, p = e["int8"], e["parity"]
        lines.append(f"- {label}: export parity (FP32 ONNX vs PyTorch, {p['source']}): largest |Δ| {p['max_abs_diff_scores']:.2e}, top-1 "
                     f"agreement {p['top1_agreement']:.4f}. INT8 ({q['scheme']}): agreement with FP32 {q['top1_agreement_with_fp32']:.4f} on "
                     f"{q['held_out_images']} images it was not calibrated on; file {q['bytes'] / 1e6:.1f} MB vs {e['bytes'] / 1e6:.1f} MB.")
    (RESULTS / f"deploy-{args.tag}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

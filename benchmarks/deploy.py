"""Inference engines on 2 CPU cores: one trained Lite0 run scored by eager PyTorch (NCHW and
channels-last), torch.export, onnxruntime FP32/INT8 and OpenVINO FP32/INT8 — images per second
at batch 1 and 64, p50/p99 latency per batch, and accuracy on the same Fashion-MNIST test images
for each, all in one process so the ratios share the machine's state.

Rerun:   python benchmarks/deploy.py --tag fm
Smaller: python benchmarks/deploy.py --tag quick --images 500 --repeats 2

The run: ``train fashion-mnist --labels-per-class 100 --strategy auto --image-size 112`` (seed 0,
trained once into ``--work``). Every engine gets the same uint8 pixels, prepared by the rule the
export states (shorter side to 112, centre crop); the INT8 graphs are ``export --int8``'s
(static, per-channel, calibrated on 64 of the run's training images).
Results: benchmarks/results/deploy-<tag>.json and .md, with the machine and commit.
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

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from benchmarks.strategies import machine_info  # noqa: E402
from headstart import TrainConfig, api  # noqa: E402
from headstart.data import resolve  # noqa: E402
from headstart.data.decode import to_square_uint8  # noqa: E402
from headstart.export.engines import openvino_runner  # noqa: E402
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tag", default="fm")
    ap.add_argument("--work", default="/tmp/headstart-bench-deploy")
    ap.add_argument("--images", type=int, default=2000, help="Test images scored by every engine (the same share of every class)")
    ap.add_argument("--single", type=int, default=200, help="Images sent one at a time for the batch-1 rows")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    work = Path(args.work)
    run_dir = work / "lite0-112"
    if not (run_dir / "model.json").is_file():
        api.train(TrainConfig(data="fashion-mnist", labels_per_class=100, strategy="auto", image_size=112, seed=0, output=str(run_dir),
                              progress=False, overwrite=True))
    info = api.export(run_dir, int8=True)
    api.export(run_dir, format="pt2")
    size = int(info["input"]["size"])
    test = resolve("fashion-mnist", split="test")
    rng = np.random.default_rng(0)
    per = args.images // len(test.classes)
    idx = np.sort(np.concatenate([rng.permutation(np.flatnonzero(test.labels == c))[:per] for c in range(len(test.classes))]))
    x = np.stack([to_square_uint8(Image.fromarray(test.images[i]), size) for i in idx]).transpose(0, 3, 1, 2).copy()
    y = np.asarray(test.labels)[idx]
    loaded = load_run(run_dir)
    module, _ = exportable(loaded)
    module.eval()
    torch.set_num_threads(threads())

    def eager(channels_last: bool):
        m = module.to(memory_format=torch.channels_last) if channels_last else module.to(memory_format=torch.contiguous_format)

        def run(b):
            t = torch.from_numpy(b)
            if channels_last:
                t = t.contiguous(memory_format=torch.channels_last)
            with torch.inference_mode():
                return m(t)[1].numpy()
        return run

    engines = {
        "eager PyTorch, NCHW": eager(False),
        "eager PyTorch, channels-last": eager(True),
        "torch.export (.pt2)": (lambda r: (lambda b: r(b)[1]))(pt2_runner(run_dir / "model.pt2")),
        "onnxruntime FP32": (lambda r: (lambda b: r(b)[1]))(onnx_runner(run_dir / "model.onnx")),
        "onnxruntime INT8": (lambda r: (lambda b: r(b)[1]))(onnx_runner(run_dir / "model.int8.onnx")),
        "OpenVINO FP32": (lambda r: (lambda b: r(b)[1]))(openvino_runner(run_dir / "model.onnx")),
        "OpenVINO INT8": (lambda r: (lambda b: r(b)[1]))(openvino_runner(run_dir / "model.int8.onnx")),
    }
    rows = []
    for name, run in engines.items():
        b64 = timed(run, x, 64, args.repeats)
        b1 = timed(run, x[: args.single], 1, 1)
        rows.append({"engine": name, "batch_64": b64, "batch_1": b1})
        print(json.dumps({"engine": name, "b64_img_s": b64["img_s"], "b1_img_s": b1["img_s"]}), flush=True)
    # accuracy: every engine on all the chosen images, in batches of 64
    for row, run in zip(rows, engines.values()):
        preds = np.concatenate([run(x[i : i + 64]).argmax(1) for i in range(0, len(x), 64)])
        row["accuracy"] = float((preds == y).mean())
    base = rows[0]
    for r in rows:
        r["speedup_b64"] = r["batch_64"]["img_s"] / base["batch_64"]["img_s"]
        r["speedup_b1"] = r["batch_1"]["img_s"] / base["batch_1"]["img_s"]
        r["accuracy_delta"] = r["accuracy"] - base["accuracy"]
    res = {"tag": args.tag, "machine": machine_info(), "run": str(run_dir), "images": int(len(x)), "single": args.single, "size": size,
           "threads": threads(), "rows": rows, "export": {k: info[k] for k in ("parity", "int8", "bytes")}}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"deploy-{args.tag}.json").write_text(json.dumps(res, indent=1))
    m = res["machine"]
    lines = ["# Inference engines on the CPU", "",
             f"Machine: {m.get('cpu')}, {m.get('cores')} cores, {res['threads']} threads per engine, GPU: {m.get('gpu') or 'none'}; torch "
             f"{m.get('torch')}; commit {m.get('commit')}. Rerun: `python benchmarks/deploy.py --tag {args.tag}`.", "",
             f"One Lite0 run (Fashion-MNIST, 100 labels/class, auto) at {size} px; {len(x)} test images (batch 64, median of {args.repeats} "
             f"passes) and {args.single} sent one at a time (batch 1); accuracy on the {len(x)}. Speed-ups against eager NCHW of the same process.", "",
             "| engine | img/s, batch 64 | × | p50 / p99 ms per batch of 64 | img/s, batch 1 | × | p50 / p99 ms | accuracy | Δ points |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        a, b = r["batch_64"], r["batch_1"]
        lines.append(f"| {r['engine']} | {a['img_s']:.0f} | {r['speedup_b64']:.2f} | {a['p50_ms']:.0f} / {a['p99_ms']:.0f} | {b['img_s']:.0f} | "
                     f"{r['speedup_b1']:.2f} | {b['p50_ms']:.1f} / {b['p99_ms']:.1f} | {r['accuracy']:.4f} | {100 * r['accuracy_delta']:+.2f} |")
    q = info["int8"]
    lines += ["", f"Export parity (FP32 ONNX vs PyTorch, {info['parity']['source']}): largest |Δ| {info['parity']['max_abs_diff_scores']:.2e}, "
              f"top-1 agreement {info['parity']['top1_agreement']:.4f}. INT8: agreement with FP32 {q['top1_agreement_with_fp32']:.4f} on its "
              f"{q['calibration_images']} calibration images; file {q['bytes'] / 1e6:.1f} MB vs {info['bytes'] / 1e6:.1f} MB."]
    (RESULTS / f"deploy-{args.tag}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

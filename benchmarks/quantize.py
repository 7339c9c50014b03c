"""INT8 schemes for one Lite0 run on this CPU: which calibration, which layers kept FP32, which
tool (onnxruntime's static QDQ quantizer or NNCF for OpenVINO) — accuracy on the same
Fashion-MNIST test images as FP32, and img/s at batch 64, in one process.

Rerun:  python benchmarks/quantize.py --tag fm     (needs `pip install nncf` for the NNCF rows)

The run is benchmarks/deploy.py's (``train fashion-mnist --labels-per-class 100 --strategy auto
--image-size 112``, trained into ``--work`` when missing). Calibration images: a seeded draw of
the training split (64 or 512 images); test: 2000 test images, 200 per class. Each row is one
quantized file; ``export --int8``'s default is the row marked *default*.

The last column scores each file again in OpenVINO limited to AVX2 (``ONEDNN_MAX_CPU_ISA=AVX2``,
a fresh process): what a CPU without VNNI computes, where INT8 products are summed in pairs into
16 bits and can saturate.
Results: benchmarks/results/quantize-<tag>.json and .md, with the machine and commit.
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
from PIL import Image  # noqa: E402

from benchmarks.strategies import machine_info  # noqa: E402
from headstart import TrainConfig, api  # noqa: E402
from headstart.data import resolve  # noqa: E402
from headstart.data.decode import to_square_uint8  # noqa: E402
from headstart.export.engines import openvino_runner  # noqa: E402
from headstart.export.formats import onnx_runner, threads  # noqa: E402
from headstart.export.graph import INPUT  # noqa: E402
from headstart.export.quantize import boundary_layers, cpu_int8  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def avx2_accuracy(files: list[Path], x: np.ndarray, y: np.ndarray, work: Path) -> list[float]:
    """Accuracy of each file in OpenVINO restricted to AVX2, in one child process (the variable
    must be set before OpenVINO loads)."""
    import subprocess

    np.save(work / "x.npy", x)
    np.save(work / "y.npy", y)
    code = ("import json, sys, numpy as np\nfrom pathlib import Path\nfrom headstart.export.engines import openvino_runner\n"
            f"x, y = np.load({str(work / 'x.npy')!r}), np.load({str(work / 'y.npy')!r})\nout = []\n"
            "for f in sys.argv[1:]:\n    r = openvino_runner(Path(f))\n"
            "    p = np.concatenate([r(x[i:i + 64])[1].argmax(1) for i in range(0, len(x), 64)])\n    out.append(float((p == y).mean()))\n"
            "print(json.dumps(out))\n")
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2"}
    done = subprocess.run([sys.executable, "-c", code, *map(str, files)], env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tag", default="fm")
    ap.add_argument("--work", default="/tmp/headstart-bench-deploy")
    args = ap.parse_args()
    run = Path(args.work) / "lite0-112"
    if not (run / "model.json").is_file():
        api.train(TrainConfig(data="fashion-mnist", labels_per_class=100, strategy="auto", image_size=112, seed=0, output=str(run),
                              progress=False, overwrite=True))
    fp32 = run / "model.onnx"
    api.export(run)
    out_dir = Path(args.work) / "quantize"
    out_dir.mkdir(parents=True, exist_ok=True)
    size = 112
    rng = np.random.default_rng(0)
    test = resolve("fashion-mnist", split="test")
    idx = np.sort(np.concatenate([rng.permutation(np.flatnonzero(test.labels == c))[:200] for c in range(10)]))
    x = np.stack([to_square_uint8(Image.fromarray(test.images[i]), size) for i in idx]).transpose(0, 3, 1, 2).copy()
    y = np.asarray(test.labels)[idx]
    train = resolve("fashion-mnist", split="train")
    cal = np.stack([to_square_uint8(Image.fromarray(train.images[i]), size) for i in rng.permutation(len(train.labels))[:512]])
    cal = cal.transpose(0, 3, 1, 2).copy()

    def measure(run_) -> dict:
        p = np.concatenate([run_(x[i : i + 64])[1].argmax(1) for i in range(0, len(x), 64)])
        rates = []
        for _ in range(3):
            t = time.perf_counter()
            for i in range(0, 1024, 64):
                run_(x[i : i + 64])
            rates.append(1024 / (time.perf_counter() - t))
        return {"accuracy": float((p == y).mean()), "img_s_b64": float(np.median(rates))}

    rows = [{"row": "FP32", "tool": "onnxruntime", "file": str(fp32), **measure(onnx_runner(fp32))},
            {"row": "FP32", "tool": "OpenVINO", "file": str(fp32), **measure(openvino_runner(fp32))}]
    print(json.dumps(rows), flush=True)

    import onnx
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    pre = out_dir / "pre.onnx"
    quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
    keep = boundary_layers(onnx.load(str(pre)))

    class Reader(CalibrationDataReader):
        def __init__(self, c):
            self.b = iter([c[i : i + 8] for i in range(0, len(c), 8)])

        def get_next(self):
            b = next(self.b, None)
            return None if b is None else {INPUT: b}

    def ort(name: str, n: int, method=CalibrationMethod.MinMax, exclude=(), also_openvino=False, **kw) -> None:
        o = out_dir / f"{len(rows)}.onnx"
        t = time.perf_counter()
        quantize_static(str(pre), str(o), Reader(cal[:n]), quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, calibrate_method=method, nodes_to_exclude=list(exclude), **kw)
        s = time.perf_counter() - t
        rows.append({"row": name, "tool": "onnxruntime", "calibration": n, "quantize_s": s, "file": str(o), **measure(onnx_runner(o))})
        print(json.dumps(rows[-1]), flush=True)
        if also_openvino:
            rows.append({"row": name + " (the same file in OpenVINO)", "tool": "OpenVINO", "calibration": n, "quantize_s": s, "file": str(o),
                         **measure(openvino_runner(o))})
            print(json.dumps(rows[-1]), flush=True)

    ort("MinMax, every layer INT8", 64, also_openvino=True)
    ort("MinMax, first and last layers FP32 (default)", 64, exclude=keep, also_openvino=True)
    ort("MinMax, first and last layers FP32", 512, exclude=keep)
    ort("MinMax, 7-bit weights (reduce_range), first and last FP32", 64, exclude=keep, reduce_range=True)
    ort("MinMax, 7-bit weights (reduce_range), every layer INT8", 64, reduce_range=True)
    ort("Percentile 99.99, first and last FP32", 256, CalibrationMethod.Percentile, exclude=keep, extra_options={"CalibPercentile": 99.99})
    ort("Entropy, first and last FP32", 256, CalibrationMethod.Entropy, exclude=keep)
    try:
        import nncf
        import openvino as ov
        from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix
    except ImportError:
        print("nncf is not installed: its rows are left out (pip install nncf)")
    else:
        for label, fix in (("NNCF defaults (7-bit first layer, fast bias correction)", OverflowFix.FIRST_LAYER),
                           ("NNCF, 7-bit weights everywhere", OverflowFix.ENABLE), ("NNCF, 8-bit weights everywhere", OverflowFix.DISABLE)):
            t = time.perf_counter()
            q = nncf.quantize(ov.Core().read_model(str(fp32)), nncf.Dataset([cal[i : i + 1] for i in range(300)]), subset_size=300,
                              advanced_parameters=AdvancedQuantizationParameters(overflow_fix=fix))
            o = out_dir / f"{len(rows)}.xml"
            ov.save_model(q, str(o))
            rows.append({"row": label, "tool": "OpenVINO", "calibration": 300, "quantize_s": time.perf_counter() - t, "file": str(o),
                         **measure(openvino_runner(o))})
            print(json.dumps(rows[-1]), flush=True)
    for r, a in zip(rows, avx2_accuracy([Path(r["file"]) for r in rows], x, y, out_dir)):
        r["avx2_openvino_accuracy"] = a
    base = {r["tool"]: r for r in rows[:2]}
    for r in rows:
        r["delta_points"] = 100 * (r["accuracy"] - base["onnxruntime"]["accuracy"])
        r["speedup"] = r["img_s_b64"] / base[r["tool"]]["img_s_b64"]
    m = {**machine_info(), **cpu_int8()}
    res = {"tag": args.tag, "machine": m, "threads": threads(), "kept_fp32": keep, "rows": rows}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"quantize-{args.tag}.json").write_text(json.dumps(res, indent=1))
    lines = ["# INT8 schemes on the CPU", "",
             f"Machine: {m.get('cpu')} (VNNI: {'yes' if m.get('vnni') else 'no'}), {m.get('cores')} cores, {threads()} threads; torch "
             f"{m.get('torch')}; commit {m.get('commit')}. Rerun: `python benchmarks/quantize.py --tag {args.tag}`.", "",
             "One Lite0 run (Fashion-MNIST, 100 labels/class, auto, 112 px); accuracy on 2000 test images (200 per class; one image is 0.05 "
             "points); img/s at batch 64 (median of 3 passes over 1024 images); × against FP32 in the same engine; Δ against FP32. Last "
             "column: the same file in OpenVINO limited to AVX2 (no VNNI), Δ against FP32.", "",
             "| scheme | engine | calibration images | accuracy | Δ points | img/s b64 | × FP32 | AVX2 only: accuracy (Δ) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        a2 = r["avx2_openvino_accuracy"]
        lines.append(f"| {r['row']} | {r['tool']} | {r.get('calibration', '')} | {r['accuracy']:.4f} | {r['delta_points']:+.2f} | "
                     f"{r['img_s_b64']:.0f} | {r['speedup']:.2f} | {a2:.4f} ({100 * (a2 - base['onnxruntime']['accuracy']):+.2f}) |")
    lines += ["", f"Layers kept FP32 by the default: {', '.join(keep)}."]
    (RESULTS / f"quantize-{args.tag}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

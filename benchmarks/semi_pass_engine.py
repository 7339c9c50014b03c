"""The teacher's pass over the unlabeled pool: eager PyTorch against onnxruntime (export/passes.py).

Rerun:  python benchmarks/semi_pass_engine.py --images 20000 --repeats 2

A supervised ``--strategy auto`` teacher on Fashion-MNIST at 10 labels per class (seed 0; the
route's first teacher: Lite0, 112 px, 5 of 9 stages frozen) labels a seeded draw of the pool
(native 28 px images, resized per batch, as the route's teachers do) by each engine in turn,
alternating, ``--repeats`` times; the median seconds of each, their ratio, the graph's export
time, and how far the two tables are apart (largest |Δ probability|, top-1 agreement). Results
go to benchmarks/results/semi-pass-engine.json and .md with the machine and commit.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.strategies import machine_info  # noqa: E402
from headstart import TrainConfig, train  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=20000)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--work", default="/tmp/semi-pass-engine")
    ap.add_argument("--tag", default="semi-pass-engine")
    args = ap.parse_args(argv)

    from headstart.data.labeled import read_training_data
    from headstart.data.tensors import images_tensor
    from headstart.export import passes
    from headstart.predictor import Predictor

    info = machine_info()
    t_all = time.perf_counter()
    work = Path(args.work)
    teacher = work / "teacher"
    cfg = TrainConfig(data="fashion-mnist", labels_per_class=10, strategy="auto", seed=0, output=str(teacher), progress=False,
                      unlabeled="pool")
    if not (teacher / "model.json").is_file():
        train(cfg.with_updates(unlabeled=None))
    data = read_training_data(cfg)
    draw = np.random.default_rng(0).choice(len(data.pool_idx), size=min(args.images, len(data.pool_idx)), replace=False)
    x = images_tensor(data.full, size=None, num_workers=0)[torch.as_tensor(np.asarray(data.pool_idx)[np.sort(draw)])]
    p = Predictor(teacher, device="cpu")
    tables = work / "tables"
    for f in tables.glob("network-*.onnx"):
        f.unlink()
    t = time.perf_counter()
    passes.graph_for(p, tables)
    export_s = time.perf_counter() - t
    p.proba_tensor(x[:256], batch_size=256)  # warm-up both
    passes.proba(p, x[:256], tables)
    seconds: dict[str, list[float]] = {"torch": [], "onnxruntime": []}
    out: dict[str, np.ndarray] = {}
    for _ in range(args.repeats):
        t = time.perf_counter()
        out["torch"] = p.proba_tensor(x, batch_size=passes.EAGER_BATCH)
        seconds["torch"].append(time.perf_counter() - t)
        t = time.perf_counter()
        out["onnxruntime"], engine = passes.proba(p, x, tables)
        seconds["onnxruntime"].append(time.perf_counter() - t)
        assert engine == "onnxruntime", "the graph's check failed: the pass fell back to PyTorch"
    med = {k: statistics.median(v) for k, v in seconds.items()}
    a, b = out["torch"], out["onnxruntime"]
    row = {
        "images": len(x), "image_size": p.run.image_size, "frozen_stages": int(p.run.meta.get("frozen_stages", 0)),
        "seconds": seconds, "median_s": med, "img_s": {k: len(x) / v for k, v in med.items()},
        "speedup": med["torch"] / med["onnxruntime"], "export_s": export_s,
        "max_abs_diff_probability": float(np.abs(a - b).max()), "top1_agreement": float((a.argmax(1) == b.argmax(1)).mean()),
    }
    result = {"machine": info, "command": "python benchmarks/semi_pass_engine.py " + " ".join(argv or sys.argv[1:]), "row": row,
              "minutes": (time.perf_counter() - t_all) / 60}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.tag}.json").write_text(json.dumps(result, indent=2))
    md = [
        "# The teacher's pass over the pool: eager PyTorch and onnxruntime",
        "",
        f"Machine: {info.get('cpu', '?')}, {info.get('cores', '?')} cores; torch {info.get('torch', '?')}; commit {info.get('commit', '?')}; "
        f"{info.get('date', '')}. This run took {result['minutes']:.1f} min.",
        f"Command: `{result['command']}`",
        "",
        f"Teacher: `--strategy auto`, Fashion-MNIST 10 labels/class, seed 0 — Lite0 at {row['image_size']} px, {row['frozen_stages']} "
        f"stages frozen. {row['images']} pool images at 28 px, resized per batch; each engine {args.repeats}×, alternating.",
        "",
        "| engine | median s | img/s | × eager |",
        "|---|---|---|---|",
        f"| eager PyTorch (channels-last, batch {passes.EAGER_BATCH}) | {med['torch']:.1f} | {row['img_s']['torch']:.0f} | 1.00 |",
        f"| onnxruntime (batch {passes.BATCH}, no spinning; first {passes.CHECK_IMAGES} images checked against PyTorch) | "
        f"{med['onnxruntime']:.1f} | {row['img_s']['onnxruntime']:.0f} | {row['speedup']:.2f} |",
        "",
        f"The graph's export: {export_s:.1f} s (once per teacher). Tables apart by at most {row['max_abs_diff_probability']:.2g} in "
        f"probability; top-1 agreement {row['top1_agreement']:.4f}.",
    ]
    (RESULTS / f"{args.tag}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Every fixed strategy's test accuracy and weights hash on fixed seeds: the reference a
refactor must reproduce bit for bit (on the same machine: fine-tuning is bit-reproducible on
one CPU model, not across them).

    python -m benchmarks.fingerprints                     # record: results/fingerprints.json (~4 min)
    python -m benchmarks.fingerprints --check FILE.json   # rerun and compare with a recording

Cases: digits and Fashion-MNIST (if installed) at 10 labels per class, seed 0; strategies knn,
linear, partial, full with their default settings, each scored on the official test split.
The weights hash is SHA-256 over the run's ``model.safetensors`` tensors in name order.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
STRATEGIES = ("knn", "linear", "partial", "full")


def weights_hash(run_dir: Path) -> str:
    from safetensors.torch import load_file

    state = load_file(str(run_dir / "model.safetensors"))
    h = hashlib.sha256()
    for name in sorted(state):
        h.update(name.encode())
        h.update(state[name].contiguous().numpy().tobytes())
    return h.hexdigest()


def record(datasets: list[str]) -> list[dict]:
    from headstart import TrainConfig, evaluate, train

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for data in datasets:
            for strategy in STRATEGIES:
                t0 = time.perf_counter()
                res = train(TrainConfig(data=data, output=f"{tmp}/{data}-{strategy}", strategy=strategy, labels_per_class=10,
                                        seed=0, device="cpu", progress=False))
                m = evaluate(res.run_dir, device="cpu")
                row = {"data": data, "strategy": strategy, "labels_per_class": 10, "seed": 0, "test_accuracy": m["accuracy"],
                       "num_test": m["num_images"], "weights_sha256": weights_hash(res.run_dir),
                       "seconds": round(time.perf_counter() - t0, 1)}
                print(json.dumps(row), flush=True)
                rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", type=Path, help="compare with this recording instead of writing one")
    ap.add_argument("--out", type=Path, default=RESULTS / "fingerprints.json")
    args = ap.parse_args()
    from headstart.data import BUILTIN_DATASETS
    from headstart.errors import DataError

    datasets = ["digits"]
    try:
        BUILTIN_DATASETS.get("fashion-mnist")(split="test", root=None)
        datasets.append("fashion-mnist")
    except DataError:
        print("fashion-mnist is not installed: digits only", file=sys.stderr)
    rows = record(datasets)
    from benchmarks.strategies import machine_info

    out = {"rows": rows, "machine": machine_info()}
    if args.check is None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=2) + "\n")
        print(f"written to {args.out}")
        return
    ref = {(r["data"], r["strategy"]): r for r in json.loads(args.check.read_text())["rows"]}
    bad = 0
    for r in rows:
        old = ref.get((r["data"], r["strategy"]))
        same = old is not None and old["weights_sha256"] == r["weights_sha256"] and old["test_accuracy"] == r["test_accuracy"]
        bad += not same
        print(f"{'same' if same else 'DIFFERENT'}: {r['data']} {r['strategy']} accuracy {r['test_accuracy']:.4f}"
              + ("" if same or old is None else f" (was {old['test_accuracy']:.4f})"))
    raise SystemExit(1 if bad else 0)


if __name__ == "__main__":
    main()

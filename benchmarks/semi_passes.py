"""The route's student with more passes over the unlabeled pool, on the route's own teacher table.

Rerun:  python benchmarks/semi.py --labels 10 --seeds 0 1 --route 30 --work W --tag ...   (the routes)
        python benchmarks/semi_passes.py --routes W/k10-s0/route-30min W/k10-s1/route-30min --passes 2

Each route folder holds the student the route trained (one pass over its unlabeled images) and
the table its teachers wrote (``teacher_targets.safetensors``: the mean of their probabilities
for every pool image). This script trains the same student again — the route's recorded
request, same seed, same labels, same pool draw — with ``--epochs P`` and no time budget,
reading that saved table instead of running the four teachers over the pool again (the same
numbers; it saves ~4 × 130 s per run). Both students are scored on the official test split.
Results go to benchmarks/results/semi-passes.json and .md with the machine and commit.
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

import yaml  # noqa: E402

from benchmarks.strategies import machine_info  # noqa: E402
from headstart import TrainConfig, evaluate, train  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def student_again(route: Path, passes: int, out: Path) -> dict:
    """The route's student, retrained with ``passes`` epochs on the route's saved table."""
    from safetensors.torch import load_file

    import headstart.api_semi as api_semi

    saved = load_file(str(route / "teacher_targets.safetensors"))["probs"]
    real = api_semi.member_tables
    api_semi.member_tables = lambda *args, **kwargs: [saved]
    try:
        req = yaml.safe_load((route / "config.yaml").read_text())["requested"]
        req.update(output=str(out), epochs=passes, time_budget=None, resume=False, overwrite=False)
        wall = None  # a student trained before (in --work) is scored, not timed again
        if not (out / "metrics.json").is_file():
            t0 = time.perf_counter()
            train(TrainConfig.from_dict(req))
            wall = round(time.perf_counter() - t0, 1)
    finally:
        api_semi.member_tables = real
    m = json.loads((out / "metrics.json").read_text())
    return {"passes": passes, "test_acc": evaluate(str(out), None)["accuracy"], "fit_s": round(m["fit_seconds"], 1), "wall_s": wall}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--routes", nargs="+", required=True, help="route folders (train --unlabeled pool --time-budget ...)")
    ap.add_argument("--passes", type=int, nargs="+", default=[2])
    ap.add_argument("--work", default="/tmp/semi-passes", help="folder for the retrained students")
    a = ap.parse_args(argv)
    rows = []
    for route in map(Path, a.routes):
        req = yaml.safe_load((route / "config.yaml").read_text())
        seed, m = req["requested"]["seed"], json.loads((route / "metrics.json").read_text())
        rows.append({"route": str(route), "seed": seed, "passes": int(req["resolved"]["epochs"]),
                     "test_acc": evaluate(str(route), None)["accuracy"], "fit_s": round(m["fit_seconds"], 1), "wall_s": None})
        for p in a.passes:
            rows.append({"route": str(route), "seed": seed, **student_again(route, p, Path(a.work) / f"s{seed}-e{p}")})
        print(json.dumps(rows[-1 - len(a.passes):]), flush=True)
    info = machine_info()
    command = "python benchmarks/semi_passes.py " + " ".join(argv if argv is not None else sys.argv[1:])
    (RESULTS / "semi-passes.json").write_text(json.dumps({"info": info, "command": command, "rows": rows}, indent=2))
    lines = ["# The route's student: passes over the unlabeled pool (Fashion-MNIST, 10 labels/class)", "",
             f"Machine: {info.get('cpu')}, {info.get('cores')} cores; torch {info.get('torch')}; commit {info.get('commit')}; {info.get('date')}.",
             f"Command: `{command}`", "",
             "Each student learns from the same table (its route's four teachers together) on the same labels and pool; "
             "one pass is the route's own student.", "",
             "| seed | passes | test accuracy | student training (s) |", "|---|---|---|---|"]
    lines += [f"| {r['seed']} | {r['passes']} | {r['test_acc']:.4f} | {r['fit_s']} |" for r in rows]
    by = {}
    for r in rows:
        by.setdefault(r["passes"], []).append(r["test_acc"])
    lines += ["", "| passes | mean test accuracy | seeds |", "|---|---|---|"]
    lines += [f"| {p} | {statistics.mean(v):.4f} | {len(v)} |" for p, v in sorted(by.items())]
    (RESULTS / "semi-passes.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

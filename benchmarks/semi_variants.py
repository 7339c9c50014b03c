"""The variants of the student tried on one teacher (Fashion-MNIST, 10 labels/class, seed 0),
tabulated from their recorded outputs in benchmarks/results/semi-variants/.

Rerun each (the teacher is `benchmarks/semi.py --labels 10 --seeds 0 --rounds 0 --work W`'s
W/k10-s0/teacher), then `python benchmarks/semi_variants.py` rebuilds the table:
  weak-keep70-10k-4ep:   headstart selftrain TEACHER --unlabeled pool --rounds 1 --unlabeled-limit 10000 --epochs 4 -O view=weak -O keep=0.7
  strong-30k-2ep:        headstart selftrain TEACHER --unlabeled pool --rounds 1 --unlabeled-limit 30000 --epochs 2
  fixmatch-init-from-teacher: headstart train fashion-mnist --labels-per-class 10 --seed 0 --unlabeled pool --unlabeled-limit 20000
                         --method fixmatch --init-from TEACHER   (then headstart eval)
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent / "results" / "semi-variants"
NOTES = {
    "strong-30k-2ep": "ran while the test suite and a fingerprint check shared the 2 cores: its seconds are not an idle machine's",
}


def main() -> None:
    rows = []
    for f in sorted(HERE.glob("*.rounds.json")):
        r = json.loads(f.read_text())["rounds"]
        rows.append((f.name.split(".")[0], r[0]["test_acc"], r[-1]["test_acc"], r[-1]["seconds"], r[-1].get("teacher_pseudo_acc")))
    for f in sorted(HERE.glob("*.eval.json")):
        name = f.name.split(".")[0]
        m = json.loads((HERE / f"{name}.metrics.json").read_text())
        last = m["history"][-1]
        rows.append((name, None, json.loads(f.read_text())["accuracy"], round(m["seconds"], 1), last.get("pool_pseudo_acc")))
    lines = ["# Student variants on one teacher (Fashion-MNIST, 10 labels/class, seed 0; AMD EPYC, 2 cores)", "",
             "Built by `python benchmarks/semi_variants.py` from the recorded outputs beside this file; commands in its docstring.", "",
             "| variant | teacher test acc | student test acc | student seconds | pseudo-labels right |", "|---|---|---|---|---|"]
    for name, t, s, sec, pa in rows:
        lines.append(f"| {name} | {'' if t is None else f'{t:.4f}'} | {s:.4f} | {sec} | {'' if pa is None else f'{pa:.1%}'} |")
    lines += [""] + [f"- {name}: {note}" for name, note in NOTES.items() if any(r[0] == name for r in rows)]
    (HERE / "README.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

"""Distillation on Fashion-MNIST at few labels per class: an ensemble of three ``auto`` runs
taught to one student, beside the same student on labels only, from ``headstart distill``.

Rerun:  python benchmarks/distill.py --labels 10 --seed 0 --tag k10-s0 --work /tmp/dist/work

The teacher: three ``--strategy auto`` runs (training seeds s, s+1, s+2, one labeled draw,
``--split-seed s``) combined by ``headstart ensemble`` (the same members as
benchmarks/ensemble.py, so a shared ``--work`` folder trains them once). The students, each
through the product's own ``api.distill`` (which puts the student beside its teacher: test
accuracy, parameters, file size, img/s at batch 64, latency at batch 1, in the same process):

- ``resnet_small`` (0.3 M parameters, 32 px, from scratch) on the labels only (``train``);
- the same, distilled on the labeled images only;
- the same, distilled with the 59,900-image pool (``--unlabeled pool --cached-teacher``),
  at the default plan (one pass over the pool) and at ``--epochs E`` passes;
- consistent teaching against the cached table, both on a 10,000-image draw of the pool,
  one pass: what the teacher's pass on every drawn view buys and costs;
- EfficientNet-Lite0 at 112 px distilled with the pool (one pass), the teacher's own size.

Results go to benchmarks/results/distill-<tag>.json and .md with the machine and commit.
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

from benchmarks.strategies import machine_info  # noqa: E402
from headstart import TrainConfig, api, train  # noqa: E402
from headstart.api_distill import compare  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def teacher(k: int, seed: int, work: Path) -> tuple[Path, dict]:
    """The three auto members (trained unless in ``work``) and their soft-vote ensemble."""
    paths = []
    for i in range(3):
        path = work / f"auto-seed-{seed + i}"
        if not (path / "model.json").is_file():
            train(TrainConfig(data="fashion-mnist", labels_per_class=k, split_seed=seed, seed=seed + i, output=str(path), progress=False))
        paths.append(path)
    ens = work / "ens-3"
    if not (ens / "model.json").is_file():
        api.ensemble([str(p) for p in paths], output=ens, rule="soft", device="cpu", overwrite=True)
    return ens, json.loads((ens / "metrics.json").read_text())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--labels", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tag", default="k10-s0")
    ap.add_argument("--epochs", type=int, default=8, help="passes over the pool for the longer resnet_small student")
    ap.add_argument("--only", default=None, help="comma-separated row keys to run (default: all)")
    ap.add_argument("--work", default=None, help="folder for the runs (default: a temporary one)")
    a = ap.parse_args(argv)
    work = Path(a.work or tempfile.mkdtemp(prefix="distill-bench-"))
    t0 = time.perf_counter()
    ens, ens_metrics = teacher(a.labels, a.seed, work)
    print(f"teacher {ens}: test {ens_metrics['test']['ensemble']['accuracy']:.4f}", flush=True)
    common = dict(progress=False, device="cpu", seed=a.seed)
    rows = {
        "small-labels": ("resnet_small, labels only (supervised)", None),
        "small-kd": ("resnet_small, distilled, labeled images only", dict()),
        "small-kd-pool": ("resnet_small, distilled + pool (cached teacher), default plan", dict(unlabeled="pool", cached_teacher=True)),
        f"small-kd-pool-e{a.epochs}": (f"resnet_small, distilled + pool (cached teacher), {a.epochs} passes",
                                       dict(unlabeled="pool", cached_teacher=True, epochs=a.epochs)),
        "small-kd-10k-cached": ("resnet_small, distilled + 10k of the pool, cached teacher, 1 pass",
                                dict(unlabeled="pool", cached_teacher=True, unlabeled_limit=10000, epochs=1)),
        "small-kd-10k-consistent": ("resnet_small, distilled + 10k of the pool, consistent teaching, 1 pass",
                                    dict(unlabeled="pool", cached_teacher=False, unlabeled_limit=10000, epochs=1)),
        "lite0-kd-pool": ("efficientnet_lite0 112px, distilled + pool (cached teacher), default plan",
                          dict(unlabeled="pool", cached_teacher=True, student="efficientnet_lite0")),
    }
    only = set(a.only.split(",")) if a.only else set(rows)
    out_path = RESULTS / f"distill-{a.tag}.json"
    done = json.loads(out_path.read_text())["rows"] if out_path.is_file() else {}
    for key, (label, kw) in rows.items():
        if key not in only:
            continue
        folder = work / key
        t = time.perf_counter()
        if kw is None:
            res = train(TrainConfig(data="fashion-mnist", labels_per_class=a.labels, split_seed=a.seed, backbone="resnet_small",
                                    output=str(folder), overwrite=True, **common))
            cmp = compare(ens, Path(res.run_dir), device="cpu")
        else:
            kw = dict(kw)
            student = kw.pop("student", "resnet_small")
            cached = kw.pop("cached_teacher", False)
            unlabeled = kw.pop("unlabeled", None)
            cmp = api.distill(ens, student=student, output=folder, unlabeled=unlabeled, cached_teacher=cached, overwrite=True,
                              **common, **kw)
        seconds = time.perf_counter() - t
        m = json.loads((folder / "metrics.json").read_text())
        row = {"label": label, "seconds": seconds, "teacher": cmp["teacher"], "student": cmp["student"], "speedup": cmp.get("speedup"),
               "pseudo": m.get("teacher"), "epochs": len(m.get("history") or []), "train_seconds": m.get("seconds")}
        done[key] = row
        print(json.dumps({"row": key, "accuracy": row["student"]["test_accuracy"], "seconds": round(seconds), "speedup": row["speedup"]}),
              flush=True)
        write(a, ens_metrics, done, t0)
    return 0


def write(a: argparse.Namespace, ens_metrics: dict, done: dict, t0: float) -> None:
    info = machine_info()
    command = "python benchmarks/distill.py " + " ".join(sys.argv[1:])
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"distill-{a.tag}.json").write_text(json.dumps({"info": info, "command": command, "ensemble": ens_metrics["test"]["ensemble"],
                                                                 "members": ens_metrics["test"]["members"], "rows": done}, indent=2, default=str))
    e = ens_metrics["test"]
    best = max(r["accuracy"] for r in e["members"])
    lines = [
        f"# Benchmark `distill`: Fashion-MNIST, {a.labels} labels per class (labeled draw of seed {a.seed})", "",
        f"Machine: {info.get('cpu')}, {info.get('cores')} cores, GPU {info.get('gpu') or 'none'}; torch {info.get('torch')}; commit "
        f"{info.get('commit')}; {info.get('date')}. This invocation took {(time.perf_counter() - t0) / 60:.1f} min.",
        f"Command: `{command}`", "",
        f"Teacher: the soft vote of three `auto` runs (seeds {a.seed}–{a.seed + 2}), test accuracy **{e['ensemble']['accuracy']:.4f}** "
        f"(best member {best:.4f}). Test: the official 10,000-image split. img/s at batch 64 and latency at batch 1 are measured by "
        "`distill` on 256 test images, student and teacher in the same process, so each row's speed-up is its own ratio.", "",
        "| student | test accuracy | vs teacher | params | file MB | img/s (b64) | ms/img (b1) | teacher img/s | speed-up | "
        "pool labels right | epochs | student's train s | row s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in done.values():
        s, t = row["student"], row["teacher"]
        pseudo = row.get("pseudo") or {}
        right = f"{pseudo['accuracy']:.1%}" if "accuracy" in pseudo else ""
        lines.append(
            f"| {row['label']} | {s['test_accuracy']:.4f} | {(s['test_accuracy'] - t['test_accuracy']) * 100:+.2f} | "
            f"{s['parameters'] / 1e6:.2f}M | {s['file_bytes'] / 1e6:.1f} | {s['images_per_second']:.0f} | {s['latency_ms_batch1']:.1f} | "
            f"{t['images_per_second']:.0f} | {row['speedup']:.1f}× | {right} | {row['epochs']} | {row.get('train_seconds') or 0:.0f} | "
            f"{row['seconds']:.0f} |")
    (RESULTS / f"distill-{a.tag}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    raise SystemExit(main())

"""Learning from the unlabeled pool: Noisy Student rounds beside the supervised teacher of the
same run, on Fashion-MNIST at few labels per class.

Rerun:  python benchmarks/semi.py --labels 10 --seeds 0 --rounds 2 --limit 20000
        python benchmarks/semi.py --labels 10 --seeds 0 1 2 --rounds 1 --limit 20000 --tag 3seeds
        python benchmarks/semi.py --labels 10 --seeds 0 1 2 --route 30 --tag route30-k10-3seeds
        python benchmarks/semi.py --labels 1 --seeds 1 2 --route 30 --tag route30-k1-3seeds --merge semi-route30-k1-s0.json
        python benchmarks/semi.py --data digits --labels 10 --seeds 0 1 2 --route 30 --tag digits-route30-k10
        python -c "from benchmarks.folders import build_icons; build_icons('/tmp/icons')"
        python benchmarks/semi.py --data /tmp/icons/train --test /tmp/icons/test --labels 10 --seeds 0 1 2 --route 30 --tag icons-route30-k10
        python benchmarks/folders.py icons /tmp/icons --unlabeled   # also /tmp/icons/unlabeled: every other icon
        python benchmarks/semi.py --data /tmp/icons/train --test /tmp/icons/test --unlabeled /tmp/icons/unlabeled \
            --labels 10 --seeds 0 1 2 --route 10 --tag icons-unlabeled-route10-k10

Each seed trains the supervised teacher (``--strategy auto`` on K labels per class: the best
supervised result, the baseline of every row), then ``headstart selftrain`` rounds: the
teacher's soft labels on (a seeded draw of) the rest of the training split, a noised student
(strong view, dropout, stochastic depth) on labels + pool, which teaches the next round.
Every run is scored on the official 10,000-image test split; the pool's hidden labels score
the teacher's pseudo-labels. Wall time counts everything from the first teacher on: the
advice, training, the teacher passes over the pool. Results go to
benchmarks/results/semi-<tag>.json and .md with the machine, versions and commit.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.strategies import machine_info  # noqa: E402
from headstart import TrainConfig, evaluate, train  # noqa: E402
from headstart.api import selftrain  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
DATA = {"data": "fashion-mnist", "test": None, "unlabeled": "pool"}
"""The data every run trains on, the labeled test images (None: the built-in set's test split) and
the route's unlabeled images (``pool``: the rest of the training split, its labels hidden)."""


ONLINE = {
    # the methods that need no teacher run, each on its own from the ImageNet weights (label, config fields)
    "fixmatch": ("fixmatch (online)", {"method": "fixmatch"}),
    "pseudolabel": ("pseudolabel (online, flexmatch)", {"method": "pseudolabel", "method_options": {"thresholds": "flexmatch"}}),
    "propagate": ("label spreading on frozen features + linear head",
                  {"strategy": "linear", "method": "pseudolabel", "teacher": "propagate",
                   "method_options": {"view": "plain", "targets": "soft", "threshold": "0.0"}}),
}


def online_rows(k: int, seed: int, names: list[str], limit: int | None, work: Path) -> list[dict]:
    rows = []
    for name in names:
        label, fields = ONLINE[name]
        out = work / f"k{k}-s{seed}" / name
        t0 = time.perf_counter()
        train(TrainConfig(data=DATA["data"], labels_per_class=k, seed=seed, output=str(out), progress=False, unlabeled="pool",
                          unlabeled_limit=limit, **fields))
        wall = time.perf_counter() - t0
        m = json.loads((out / "metrics.json").read_text())
        last = (m.get("history") or [{}])[-1]
        pa = (m.get("teacher") or {}).get("accuracy", last.get("pool_pseudo_acc"))
        rows.append({"labels": k, "seed": seed, "method": label, "round": 0, "test_acc": evaluate(str(out), DATA["test"])["accuracy"],
                     "wall_s": round(wall, 1), "pseudo_acc": pa, "mask": last.get("pool_mask")})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def one_seed(k: int, seed: int, rounds: int, limit: int | None, work: Path, epochs: int | None, options: dict) -> list[dict]:
    t0 = time.perf_counter()
    teacher = work / f"k{k}-s{seed}" / "teacher"
    train(TrainConfig(data=DATA["data"], labels_per_class=k, seed=seed, output=str(teacher), progress=False, method="supervised"))
    t_teacher = time.perf_counter() - t0
    rows = [{"labels": k, "seed": seed, "method": "supervised auto (teacher)", "round": 0,
             "test_acc": evaluate(str(teacher), DATA["test"])["accuracy"], "wall_s": round(t_teacher, 1), "pseudo_acc": None}]
    if rounds == 0:
        return rows
    overrides = {"unlabeled_limit": limit} if limit else {}
    if epochs:
        overrides["epochs"] = epochs
    table = selftrain(str(teacher), unlabeled="pool", rounds=rounds, output=str(work / f"k{k}-s{seed}" / "st"), options=options,
                      **overrides)
    total = t_teacher
    for r in table[1:]:
        total += r["seconds"]
        rows.append({"labels": k, "seed": seed, "method": f"noisy student round {r['round']}", "round": r["round"],
                     "test_acc": r["test_acc"], "wall_s": round(total, 1), "pseudo_acc": r["teacher_pseudo_acc"], "coverage": r["coverage"]})
    return rows


def teachers_test_acc(runs: list[Path]) -> float:
    """The test accuracy of the mean of the runs' probabilities (the route's teachers together)."""
    import numpy as np

    from headstart.data import resolve
    from headstart.predictor import Predictor

    test = resolve(DATA["test"] or DATA["data"], split="test")
    probs = []
    for run in runs:
        p = Predictor(run, device="cpu")
        probs.append(p.proba_tensor(p.images_of(test, num_workers=0), batch_size=256)[:, [p.classes.index(c) for c in test.classes]])
    return float((np.mean(probs, axis=0).argmax(1) == np.asarray(test.labels)).mean())


def route_rows(k: int, seed: int, budget: float, work: Path) -> list[dict]:
    """The product's default: ``headstart train --unlabeled pool --time-budget B`` (teachers in
    OUT/teacher, OUT/teacher-2..., then a Noisy Student round in OUT), all scored."""
    out = work / f"k{k}-s{seed}" / f"route-{budget:g}min"
    t0 = time.perf_counter()
    train(TrainConfig(data=DATA["data"], labels_per_class=k, seed=seed, output=str(out), progress=False, unlabeled=DATA["unlabeled"],
                      time_budget=budget))
    wall = time.perf_counter() - t0
    m = json.loads((out / "metrics.json").read_text())
    used = json.loads((out / "splits.json").read_text())["unlabeled"]["used"]
    teachers = [out / "teacher"] + sorted(out.glob("teacher-*"), key=lambda p: int(p.name.split("-")[1]))
    rows = [
        {"labels": k, "seed": seed, "method": f"route: its first supervised teacher (--time-budget {budget:g})", "round": 0,
         "test_acc": evaluate(str(out / "teacher"), DATA["test"])["accuracy"], "wall_s": None, "pseudo_acc": None},
    ]
    if len(teachers) > 1:
        rows.append({"labels": k, "seed": seed, "method": f"route: its teachers together (--time-budget {budget:g})", "round": 0,
                     "test_acc": teachers_test_acc(teachers), "wall_s": None, "pseudo_acc": None, "teachers": len(teachers)})
    first = out / "student-1"
    if (first / "metrics.json").is_file():  # a two-round route: its first student, taught by the teachers' table
        fm = json.loads((first / "metrics.json").read_text())
        rows.append({"labels": k, "seed": seed, "method": f"route: its first student (--time-budget {budget:g})", "round": 1,
                     "test_acc": evaluate(str(first), DATA["test"])["accuracy"], "wall_s": None,
                     "pseudo_acc": (fm.get("teacher") or {}).get("accuracy"), "teachers": len(teachers), "unlabeled_used": used})
    second = json.loads((out / "selftrain.json").read_text()).get("second")  # the second student, sized when the first ended
    rows.append({"labels": k, "seed": seed, "method": f"route: auto with the pool (--time-budget {budget:g})", "round": 1,
                 "test_acc": evaluate(str(out), DATA["test"])["accuracy"], "wall_s": round(wall, 1), "pseudo_acc": (m.get("teacher") or {}).get("accuracy"),
                 "teachers": len(teachers), "unlabeled_used": used, "epochs": len(m.get("history") or []),
                 **({"second": second} if second else {})})
    print(json.dumps(rows), flush=True)
    return rows


def summarise(rows: list[dict]) -> list[dict]:
    out = []
    for key in sorted({(r["labels"], r["round"], r["method"]) for r in rows}):
        sel = [r for r in rows if (r["labels"], r["round"], r["method"]) == key]
        accs = [r["test_acc"] for r in sel]
        pa = [r["pseudo_acc"] for r in sel if r["pseudo_acc"] is not None]
        out.append({
            "labels": key[0], "method": key[2], "seeds": len(sel), "mean": statistics.mean(accs),
            "sd": statistics.stdev(accs) if len(accs) > 1 else 0.0,
            "wall_s_median": statistics.median([r["wall_s"] for r in sel if r["wall_s"] is not None] or [float("nan")]),
            "pseudo_acc": statistics.mean(pa) if pa else None,
            "teachers": sorted({r["teachers"] for r in sel if r.get("teachers")}),
            "unlabeled_used": sorted({r["unlabeled_used"] for r in sel if r.get("unlabeled_used")}),
        })
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--labels", type=int, nargs="+", default=[10])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--limit", type=int, default=20000, help="unlabeled images per round (0: the whole pool)")
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("-O", dest="options", action="append", default=[], help="student option key=value")
    ap.add_argument("--online", nargs="*", default=[], choices=sorted(ONLINE), help="also these methods without a teacher run")
    ap.add_argument("--route", type=float, default=None, help="instead of teacher + rounds: the default route with this --time-budget")
    ap.add_argument("--tag", default="fashion-mnist")
    ap.add_argument("--data", default="fashion-mnist", help="a built-in set, or a folder (then give --test)")
    ap.add_argument("--test", default=None, help="labeled test images (default: the built-in set's test split)")
    ap.add_argument("--unlabeled", default="pool", help="with --route: the unlabeled images (default: the rest of the training split, "
                                                         "its labels hidden; a folder's class subfolders only score the pseudo-labels)")
    ap.add_argument("--work", default=None, help="folder for the runs (default: a temporary one)")
    ap.add_argument("--merge", nargs="*", default=[], help="earlier results files (benchmarks/results/semi-*.json) whose rows join the "
                                                          "summary, e.g. other seeds of the same command; each is named with its machine")
    a = ap.parse_args(argv)
    options = dict(o.split("=", 1) for o in a.options)
    if a.unlabeled != "pool" and a.route is None:
        ap.error("--unlabeled DIR is for --route runs; the rounds take the rest of the training split")
    DATA.update(data=a.data, test=a.test, unlabeled=a.unlabeled)
    work = Path(a.work or tempfile.mkdtemp(prefix="semi-bench-"))
    t0 = time.perf_counter()
    rows: list[dict] = []
    for k in a.labels:
        for seed in a.seeds:
            if a.route is not None:
                rows += route_rows(k, seed, a.route, work)
                continue
            rows += one_seed(k, seed, a.rounds, a.limit or None, work, a.epochs, options)
            print(json.dumps(rows[-a.rounds - 1:]), flush=True)
            rows += online_rows(k, seed, a.online, a.limit or None, work)
    merged = []
    for name in a.merge:
        earlier = json.loads((RESULTS / name).read_text())
        rows += earlier["rows"]
        seeds = sorted({r["seed"] for r in earlier["rows"]})
        i = earlier["info"]
        merged.append(f"Seeds {', '.join(map(str, seeds))} are the rows of {name} ({i.get('cpu')}, commit {i.get('commit')}, {i.get('date')}: "
                      f"`{earlier['command']}`).")
    summary = summarise(rows)
    info = machine_info()
    command = "python benchmarks/semi.py " + " ".join(argv if argv is not None else sys.argv[1:])
    RESULTS.mkdir(exist_ok=True)
    data = {"info": info, "command": command, "rows": rows, "summary": summary, "wall_s": time.perf_counter() - t0}
    (RESULTS / f"semi-{a.tag}.json").write_text(json.dumps(data, indent=2))
    lines = [
        f"# Benchmark `semi`: {a.data}, " + ("the rest of the training split as the unlabeled pool" if a.unlabeled == "pool"
                                             else f"{a.unlabeled} as the unlabeled images"), "",
        f"Test images: {a.test or 'the official test split'}.", "",
        f"Machine: {info.get('cpu')}, {info.get('cores')} cores, GPU {info.get('gpu') or 'none'}; torch {info.get('torch')}; commit "
        f"{info.get('commit')}; {info.get('date')}. This run took {data['wall_s'] / 60:.1f} min.",
        f"Command: `{command}`", "", *([*merged, ""] if merged else []),
        "| labels/class | method | test accuracy (mean ± sd) | seeds | wall time (median s; rounds: from the teacher's start) | "
        "pseudo-labels right (teacher's, or the kept ones') | teachers; unlabeled images used |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in summary:
        pa = "" if s["pseudo_acc"] is None else f"{s['pseudo_acc']:.1%}"
        wall = "" if s["wall_s_median"] != s["wall_s_median"] else f"{s['wall_s_median']:.0f}"
        used = "; ".join(x for x in (", ".join(map(str, s.get("teachers") or [])), ", ".join(map(str, s.get("unlabeled_used") or []))) if x)
        lines.append(f"| {s['labels']} | {s['method']} | {s['mean']:.4f} ± {s['sd']:.4f} | {s['seeds']} | {wall} | {pa} | {used} |")
    (RESULTS / f"semi-{a.tag}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

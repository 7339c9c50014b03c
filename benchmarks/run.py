"""One entry point for the benchmark suites; results are JSON, a Markdown table and a plot.

    python -m benchmarks.run smoke     # ≤ 5 min: digits, a few rows: checks the harness itself
    python -m benchmarks.run labels    # ≤ 60 min: Fashion-MNIST at 1/10/100 labels per class
    python -m benchmarks.run peers     # ≤ 60 min: headstart's best vs fastai vs a plain loop, same budget
    python -m benchmarks.run advise    # ~1 h: strategy auto beside every fixed strategy, 5 cases
    python -m benchmarks.run compare benchmarks/results/labels.json NEW.json   # a person's regression check

Every accuracy is on the data set's official test split (digits: its fixed 25 % test split).
The floor is logistic regression on raw pixels fitted in the same process on the same labels.
Rows are appended as capabilities land: a suite is a list of methods, and a method is a
function returning one row. Results go to ``benchmarks/results/<suite>.{json,md,png}`` with the
machine, versions and git commit; numbers are compared against the committed files by a person
or by ``compare``, never asserted against wall-clock limits.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from benchmarks.strategies import machine_info, pixel_floor, run_strategy  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Suite:
    data: str
    labels: dict[int, list[int]]  # labels per class -> seeds
    methods: list[str]
    budget: str
    extra: dict = field(default_factory=dict)  # TrainConfig fields for every headstart row


SUITES = {
    "smoke": Suite(
        data="digits", labels={5: [0], 20: [0]}, methods=["knn", "linear", "partial"], budget="≤ 5 min",
        extra={"image_size": 32, "epochs": 3},
    ),
    "labels": Suite(
        data="fashion-mnist", labels={1: [0, 1, 2], 10: [0, 1, 2], 100: [0]},
        methods=["knn", "linear", "partial", "full"], budget="≤ 60 min",
    ),
}
ROW_KEYS = {"method", "labels_per_class", "seed", "test_acc", "train_s"}


def run_labels(name: str, suite: Suite, device: str, log) -> list[dict]:
    # every row computes its own features, so wall times compare methods, not cache luck
    extra = {"feature_cache": False, **suite.extra}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for k, seeds in suite.labels.items():
            for seed in seeds:
                acc, secs = pixel_floor(suite.data, k, seed)
                rows.append({"method": "pixels+logreg", "labels_per_class": k, "seed": seed, "test_acc": acc, "train_s": secs})
                log(rows[-1])
                for method in suite.methods:
                    rows.append(run_strategy(suite.data, k, seed, method, device=device, workdir=tmp, extra=extra))
                    rows[-1].pop("run_dir")
                    log(rows[-1])
    return rows


def summarise(rows: list[dict]) -> list[dict]:
    """Mean ± sd of test accuracy and median train time per (labels per class, method)."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["labels_per_class"], r["method"]), []).append(r)
    out = []
    for (k, method), rs in sorted(groups.items(), key=lambda kv: kv[0][0]):
        accs = [r["test_acc"] for r in rs]
        out.append(
            {
                "labels_per_class": k,
                "method": method,
                "mean": statistics.mean(accs),
                "sd": statistics.stdev(accs) if len(accs) > 1 else 0.0,
                "n": len(accs),
                "train_s": statistics.median(r["train_s"] for r in rs),
                "images_per_s": statistics.median(r["images_per_s"] for r in rs) if all("images_per_s" in r for r in rs) else None,
                "note": rs[0].get("note", ""),
            }
        )
    return out


def to_markdown(name: str, data: str, summary: list[dict], info: dict, command: str, budget: str, wall_s: float) -> str:
    lines = [
        f"# Benchmark `{name}`: {data}, test accuracy by method",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores, GPU {info['gpu'] or 'none'}; torch {info['torch']}; "
        f"commit {info['commit']}; {info['date']}. Suite budget {budget}; this run took {wall_s / 60:.1f} min.",
        f"Command: `{command}`",
        "",
        "| labels/class | method | test accuracy (mean ± sd) | seeds | train wall time (median s) | img/s | notes |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in summary:
        ips = f"{s['images_per_s']:.0f}" if s.get("images_per_s") else ""
        lines.append(
            f"| {s['labels_per_class']} | {s['method']} | {s['mean']:.4f} ± {s['sd']:.4f} | {s['n']} | {s['train_s']:.1f} | {ips} | {s['note']} |"
        )
    best: dict[int, dict] = {}
    for s in summary:
        if s["labels_per_class"] not in best or s["mean"] > best[s["labels_per_class"]]["mean"]:
            best[s["labels_per_class"]] = s
    lines.append("")
    for k, s in best.items():
        floor = next((f for f in summary if f["labels_per_class"] == k and f["method"] == "pixels+logreg"), None)
        gap = f" ({(s['mean'] - floor['mean']) * 100:+.1f} points over the raw-pixel floor)" if floor and floor is not s else ""
        lines.append(f"- {k} labels/class: best `{s['method']}` {s['mean']:.4f}{gap}")
    return "\n".join(lines) + "\n"


def plot(summary: list[dict], title: str, path: Path) -> None:
    """Accuracy vs labels per class (log scale), one line per method, ± sd as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for method in dict.fromkeys(s["method"] for s in summary):
        pts = sorted((s["labels_per_class"], s["mean"], s["sd"]) for s in summary if s["method"] == method)
        ks, means, sds = zip(*pts)
        style = {"linestyle": "--", "color": "grey"} if method == "pixels+logreg" else {}
        ax.errorbar(ks, means, yerr=sds, marker="o", capsize=3, label=method, **style)
    ax.set_xscale("log")
    ax.set_xticks(sorted({s["labels_per_class"] for s in summary}))
    ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.set_xlabel("labeled images per class")
    ax.set_ylabel("test accuracy")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_results(name: str, data: str, rows: list[dict], info: dict, out: Path, budget: str, wall_s: float, command: str) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    summary = summarise(rows)
    doc = {"suite": name, "data": data, "machine": info, "command": command, "wall_s": wall_s, "rows": rows, "summary": summary}
    (out / f"{name}.json").write_text(json.dumps(doc, indent=2))
    (out / f"{name}.md").write_text(to_markdown(name, data, summary, info, command, budget, wall_s))
    plot(summary, f"{data}: accuracy vs labels ({info['cpu'].split('@')[0].strip()}, {info['cores']} cores)", out / f"{name}.png")
    return doc


def compare(old_path: str, new_path: str, tolerance: float = 0.02) -> int:
    """Rows whose mean accuracy moved by more than ``tolerance`` (or 2 sd) between two result
    files; wall times are shown as ratios, for a person to judge on their own machine."""
    old = {(s["labels_per_class"], s["method"]): s for s in json.loads(Path(old_path).read_text())["summary"]}
    new = {(s["labels_per_class"], s["method"]): s for s in json.loads(Path(new_path).read_text())["summary"]}
    worse = 0
    print(f"{'labels':>6} {'method':<16} {'old':>7} {'new':>7} {'change':>8} {'time ratio':>10}")
    for key in sorted(set(old) | set(new)):
        o, n = old.get(key), new.get(key)
        if o is None or n is None:
            cells = ["—" if s is None else f"{s['mean']:.4f}" for s in (o, n)]
            print(f"{key[0]:>6} {key[1]:<16} {cells[0]:>7} {cells[1]:>7}")
            continue
        delta = n["mean"] - o["mean"]
        allowed = max(tolerance, 2 * max(o["sd"], n["sd"]))
        flag = "  WORSE" if delta < -allowed else "  better" if delta > allowed else ""
        worse += flag == "  WORSE"
        ratio = n["train_s"] / o["train_s"] if o["train_s"] else math.nan
        print(f"{key[0]:>6} {key[1]:<16} {o['mean']:>7.4f} {n['mean']:>7.4f} {delta:>+8.4f} {ratio:>9.2f}x{flag}")
    return 1 if worse else 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["compare"]:
        if len(argv) != 3:
            print("usage: python -m benchmarks.run compare OLD.json NEW.json", file=sys.stderr)
            return 2
        return compare(argv[1], argv[2])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("suite", choices=[*SUITES, "peers", "advise"])
    ap.add_argument("--cases", nargs="+", help="advise: only these cases (e.g. digits@10 icons@50)")
    ap.add_argument("--methods", nargs="+", help="advise: only these methods (knn linear partial full auto auto+search)")
    ap.add_argument("--merge", help="advise: add the rows of these cases from an earlier result file (e.g. results/advise.json)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--labels", type=int, nargs="+", help="peers: labels per class to compare at (default 10 100)")
    ap.add_argument("--test-limit", type=int, help="peers: score on the first N test images only (a harness check, not a result)")
    ap.add_argument("--pool-budget", type=float, help="peers: headstart trains with the unlabeled pool in this many minutes (the route)")
    args = ap.parse_args(argv)
    command = "python -m benchmarks.run " + " ".join(argv)
    info = machine_info()
    print(json.dumps(info), flush=True)

    def log(row: dict) -> None:
        print(json.dumps(row), flush=True)

    t0 = time.perf_counter()
    if args.suite == "advise":
        from benchmarks import advise

        rows = advise.run_advise(args.device, log, only=args.cases, methods=args.methods)
        wall = time.perf_counter() - t0
        if args.merge:
            earlier = json.loads(Path(args.merge).read_text())["rows"]
            rows = [r for r in earlier if not args.cases or r["case"] in args.cases] + rows
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        summary = advise.summarise_cases(rows)
        name = "advise" if not (args.cases or args.methods) else "advise-" + "-".join(
            x.replace("@", "").replace("+", "-") for x in (args.methods or []) + (args.cases or []))
        (out / f"{name}.json").write_text(json.dumps({"suite": "advise", "machine": info, "command": command, "wall_s": wall,
                                                      "rows": rows, "summary": summary}, indent=2))
        (out / f"{name}.md").write_text(advise.to_markdown(summary, info, command, wall))
        print((out / f"{name}.md").read_text())
        return 0
    if args.suite == "peers":
        from benchmarks.peers import PEERS_SUITE, run_peers

        suite = PEERS_SUITE
        rows = run_peers(args.labels or list(suite.labels), device=args.device, results=Path(args.out), log=log, test_limit=args.test_limit,
                         pool_budget=args.pool_budget)
    else:
        suite = SUITES[args.suite]
        rows = run_labels(args.suite, suite, args.device, log)
    name = args.suite if not (args.suite == "peers" and args.pool_budget) else f"peers-pool{args.pool_budget:g}"
    doc = write_results(name, suite.data, rows, info, Path(args.out), suite.budget, time.perf_counter() - t0, command)
    print((Path(args.out) / f"{name}.md").read_text())
    return 0 if all(ROW_KEYS <= set(r) for r in doc["rows"]) else 1


if __name__ == "__main__":
    sys.exit(main())

"""`auto` beside every fixed strategy: does the strategy advisor pick (or beat) the best one?

    python -m benchmarks.run advise                    # every case below (~1 h on 2 cores)
    python -m benchmarks.run advise --cases digits@10  # one case

Cases: Fashion-MNIST at 1, 10 and 100 labels per class (3 / 3 / 1 seeds, as the `labels`
suite), digits at 10 labels per class (3 seeds), and a folder of desktop-icon drawings
(``benchmarks/folders.py``: 6 classes, 50 training images each, 100 test images each). In
each case and seed the raw-pixel floor, knn, linear, partial, full and auto train on the same
labels in one process and are scored on the same test images; auto's time includes its
measurements. Goal: auto within 1 point of the best fixed strategy in every case, never the
worst.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.strategies import run_strategy
from headstart.advise import describe

FIXED = ["knn", "linear", "partial", "full"]


@dataclass(frozen=True)
class Case:
    name: str
    data: str
    labels_per_class: int | None
    seeds: list[int]
    test: str | None = None  # test folder for a folder case (built-ins use their official test split)


def cases(icons_dir: Path) -> list[Case]:
    return [
        Case("digits@10", "digits", 10, [0, 1, 2]),
        Case("icons@50", str(icons_dir / "train"), None, [0], test=str(icons_dir / "test")),
        Case("fashion-mnist@1", "fashion-mnist", 1, [0, 1, 2]),
        Case("fashion-mnist@10", "fashion-mnist", 10, [0, 1, 2]),
        Case("fashion-mnist@100", "fashion-mnist", 100, [0]),
    ]


def floor(case: Case, seed: int) -> float:
    """Logistic regression on raw pixels (32×32 RGB for folders), same labels, same test images."""
    from sklearn.linear_model import LogisticRegression

    from headstart.data import few_shot, preload, resolve

    tr = resolve(case.data, split="train")
    te = resolve(case.test or case.data, split="test")
    idx = few_shot(tr.labels, case.labels_per_class, seed)[0] if case.labels_per_class else np.arange(len(tr))

    def pixels(s):
        x = s.images if s.is_array else preload(s, size=32, num_workers=2).numpy()
        return x.reshape(len(s), -1) / 255.0

    clf = LogisticRegression(max_iter=2000).fit(pixels(tr.subset(idx)), tr.labels[idx])
    test_labels = np.array([tr.classes.index(c) for c in te.classes])[te.labels]
    return float((clf.predict(pixels(te)) == test_labels).mean())


def run_advise(device: str, log, only: list[str] | None = None, methods: list[str] | None = None) -> list[dict]:
    """One row per (case, seed, method); ``auto+search`` is auto with ``--search``."""
    from benchmarks.folders import build_icons

    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        icons = build_icons(Path(tmp) / "icons")
        for case in cases(icons):
            if only and case.name not in only:
                continue
            for seed in case.seeds:
                t0 = time.perf_counter()
                rows.append({"case": case.name, "method": "pixels+logreg", "labels_per_class": case.labels_per_class or 0,
                             "seed": seed, "test_acc": floor(case, seed), "train_s": time.perf_counter() - t0})
                log(rows[-1])
                for method in methods or [*FIXED, "auto"]:
                    search = method == "auto+search"
                    row = run_strategy(
                        case.data, case.labels_per_class, seed, "auto" if search else method, device=device, workdir=tmp,
                        extra={"feature_cache": False, "search": search}, test=case.test,
                    )
                    run_dir = Path(row.pop("run_dir"))
                    row["method"] = method
                    row["case"] = case.name
                    row["labels_per_class"] = case.labels_per_class or 0
                    if method.startswith("auto"):
                        advice = json.loads((run_dir / "advice.json").read_text())
                        row["decision"] = describe(advice["search_winner"] or advice["decision"])
                        row["advice_s"] = advice["seconds"]
                        row["similarity"] = advice["signals"]["similarity"]
                    rows.append(row)
                    log(rows[-1])
    return rows


def summarise_cases(rows: list[dict]) -> list[dict]:
    """Per case: mean ± sd of every method, the best fixed strategy, auto's gap and rank."""
    out = []
    for case in dict.fromkeys(r["case"] for r in rows):
        rs = [r for r in rows if r["case"] == case]
        methods = {}
        for m in dict.fromkeys(r["method"] for r in rs):
            accs = [r["test_acc"] for r in rs if r["method"] == m]
            methods[m] = {
                "mean": statistics.mean(accs),
                "sd": statistics.stdev(accs) if len(accs) > 1 else 0.0,
                "n": len(accs),
                "train_s": statistics.median(r["train_s"] for r in rs if r["method"] == m),
            }
        fixed = {m: v for m, v in methods.items() if m in FIXED}
        best = max(fixed, key=lambda m: fixed[m]["mean"])
        worst = min(fixed, key=lambda m: fixed[m]["mean"])
        auto = methods.get("auto")
        decisions = sorted({f"{r['method']}: {r['decision']}" for r in rs if r["method"].startswith("auto")})
        out.append({
            "case": case,
            "methods": methods,
            "best_fixed": best,
            "auto_minus_best": None if auto is None else auto["mean"] - fixed[best]["mean"],
            "auto_is_worst": None if auto is None else auto["mean"] <= fixed[worst]["mean"],
            "auto_decisions": decisions,
        })
    return out


def to_markdown(summary: list[dict], info: dict, command: str, wall_s: float) -> str:
    cols = ["pixels+logreg", *FIXED, "auto"] + (["auto+search"] if any("auto+search" in s["methods"] for s in summary) else [])
    lines = [
        "# Benchmark `advise`: auto beside every fixed strategy (test accuracy, mean ± sd over seeds)",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores, GPU {info['gpu'] or 'none'}; torch {info['torch']}; "
        f"commit {info['commit']}; {info['date']}. This run took {wall_s / 60:.1f} min.",
        f"Command: `{command}`",
        "",
        "| case | seeds | " + " | ".join(cols) + " | auto − best fixed | auto chose |",
        "|---|---|" + "---|" * len(cols) + "---|---|",
    ]
    for s in summary:
        m = s["methods"]
        cells = []
        for c in cols:
            if c not in m:
                cells.append("—")
                continue
            bold = "**" if c == s["best_fixed"] else ""
            cells.append(f"{bold}{m[c]['mean']:.4f}{bold} ± {m[c]['sd']:.3f}")
        gap = "—" if s["auto_minus_best"] is None else f"{s['auto_minus_best'] * 100:+.1f} pts" + (" (worst!)" if s["auto_is_worst"] else "")
        n = max(v["n"] for v in m.values())
        lines.append(f"| {s['case']} | {n} | " + " | ".join(cells) + f" | {gap} | {'; '.join(s['auto_decisions'])} |")
    lines += ["", "Median train wall time (s, auto includes its measurements):", "",
              "| case | " + " | ".join(cols[1:]) + " |", "|---|" + "---|" * (len(cols) - 1)]
    for s in summary:
        lines.append(f"| {s['case']} | " + " | ".join(f"{s['methods'][c]['train_s']:.0f}" if c in s["methods"] else "—" for c in cols[1:]) + " |")
    return "\n".join(lines) + "\n"

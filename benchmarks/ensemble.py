"""Ensembles on Fashion-MNIST at few labels per class: each member alone, each rule, the
ensemble's gain over its best member, calibration and cost, from ``headstart ensemble``.

Rerun:  python benchmarks/ensemble.py --labels 10 --seed 0 --tag k10-s0
        python benchmarks/ensemble.py --labels 100 --seed 0 --tag k100-s0

Members, all on the same K labels per class (the seed's labeled draw, ``--split-seed``):
three runs of one recipe (``--strategy auto``, training seeds s, s+1, s+2) and two runs that
differ in kind, a linear probe and a kNN head on the frozen body. Two ensembles are built with
``headstart ensemble`` (the product's own path: every member and every rule scored on the
official 10,000-image test split): the three seeds of one recipe, and all five members
(``--rule auto``). At 10 labels per class the members train on every label (no validation
split), so only the soft and hard votes are possible and auto says so; at 100 per class the
members share a 20 % validation split and every rule is fitted and compared on it.
With ``--mixed``, two more members of other architectures (``auto`` on EfficientNet-Lite1 and
Lite2, same labels and seed) and two more ensembles: the three architectures (Lite0/1/2, one
seed each) and all seven members.
The ensembles are temperature-calibrated where held-out images allow (``--calibrate``, the
default); the rules table on test shows each rule uncalibrated, the ensemble row calibrated.
Results go to benchmarks/results/ensemble-<tag>.json and .md with the machine and commit.
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

RESULTS = Path(__file__).resolve().parent / "results"


def members(k: int, seed: int, work: Path, mixed: bool = False) -> dict[str, tuple[Path, float]]:
    """The five (seven with ``mixed``) members, trained unless already in ``work``: name → (run
    folder, its recorded training seconds)."""
    recipes = {
        f"auto seed {seed + i}": dict(seed=seed + i) for i in range(3)
    } | {
        "linear probe": dict(seed=seed, strategy="linear"),
        "kNN head": dict(seed=seed, strategy="knn"),
    }
    if mixed:
        recipes |= {f"auto Lite{v}": dict(seed=seed, backbone=f"efficientnet_lite{v}") for v in (1, 2)}
    out = {}
    for name, fields in recipes.items():
        path = work / name.replace(" ", "-")
        if not (path / "model.json").is_file():
            train(TrainConfig(data="fashion-mnist", labels_per_class=k, split_seed=seed, output=str(path), progress=False, **fields))
        out[name] = (path, float(json.loads((path / "metrics.json").read_text())["seconds"]))  # the run's own wall time, reused or not
        print(f"{name}: {path} ({out[name][1]:.0f} s)", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--labels", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tag", default="k10-s0")
    ap.add_argument("--work", default=None, help="folder for the runs (default: a temporary one)")
    ap.add_argument("--mixed", action="store_true", help="add Lite1 and Lite2 members and the mixed-architecture ensembles")
    ap.add_argument("--only-mixed", action="store_true", help="with --mixed: build only the mixed-architecture ensembles")
    a = ap.parse_args(argv)
    work = Path(a.work or tempfile.mkdtemp(prefix="ensemble-bench-"))
    t0 = time.perf_counter()
    runs = members(a.labels, a.seed, work, mixed=a.mixed)
    built = {}
    groups = [("one recipe, 3 seeds", [n for n in runs if n.startswith("auto seed")]), ("all five", list(runs)[:5])]
    if a.mixed:
        groups = groups[2 if a.only_mixed else 0:] + [
            ("three architectures (Lite0/1/2)", [f"auto seed {a.seed}", "auto Lite1", "auto Lite2"]), ("all seven", list(runs))]
    for name, picked in groups:
        t = time.perf_counter()
        folder = work / ("ens-" + "-".join(n.split()[-1] for n in picked) if name.startswith("three") else f"ens-{len(picked)}")
        m = api.ensemble([str(runs[n][0]) for n in picked], output=folder, rule="auto", device="cpu", overwrite=True)
        built[name] = {"members": picked, "metrics": m, "seconds": time.perf_counter() - t}
        print(json.dumps({"ensemble": name, "rule": m["rule"], "accuracy": m["test"]["ensemble"]["accuracy"]}), flush=True)
    info = machine_info()
    command = "python benchmarks/ensemble.py " + " ".join(argv if argv is not None else sys.argv[1:])
    data = {"info": info, "command": command, "train_seconds": {n: s for n, (_, s) in runs.items()}, "ensembles": built,
            "wall_s": time.perf_counter() - t0}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"ensemble-{a.tag}.json").write_text(json.dumps(data, indent=2, default=str))
    lines = [
        f"# Benchmark `ensemble`: Fashion-MNIST, {a.labels} labels per class (labeled draw of seed {a.seed})", "",
        f"Machine: {info.get('cpu')}, {info.get('cores')} cores, GPU {info.get('gpu') or 'none'}; torch {info.get('torch')}; commit "
        f"{info.get('commit')}; {info.get('date')}. This run took {data['wall_s'] / 60:.1f} min.",
        f"Command: `{command}`", "",
        "Test: the official 10,000-image test split. img/s: 256 test images in batches of 64 on this CPU.", "",
    ]
    names = {str(p): n for n, (p, _) in runs.items()}
    for name, b in built.items():
        t = b["metrics"]["test"]
        d, v = t["diversity"], t["versus_best_member"]
        lines += [f"## {name}: rule {b['metrics']['rule']}", "", f"{b['metrics']['why']}", "",
                  "| model | strategy | test accuracy | NLL | ECE | img/s | train s |", "|---|---|---|---|---|---|---|"]
        for r in t["members"]:
            lines.append(f"| {names.get(r['run'], r['run'])} | {r['strategy']} ({r['head']}) | {r['accuracy']:.4f} | {r['nll']:.3f} | "
                         f"{r['ece']:.3f} | {r['images_per_second']:.0f} | {runs[names[r['run']]][1]:.0f} |")
        e = t["ensemble"]
        lines.append(f"| **ensemble ({b['metrics']['rule']})** | | **{e['accuracy']:.4f}** | {e['nll']:.3f} | {e['ece']:.3f} | "
                     f"{e['images_per_second']:.0f} | |")
        held = b["metrics"].get("held_out_rules") or {}
        if held:
            h = b["metrics"]["held_out"]
            lines += ["", f"Rules on the {h['images']} held-out images no member trained on (fitted rules out of fold):", "",
                      "| rule (held out) | accuracy | NLL | ECE |", "|---|---|---|---|"]
            lines += [f"| {rn} | {r['accuracy']:.4f} | {r['nll']:.3f} | {r['ece']:.3f} |" if r.get("available") else f"| {rn} | {r['why']} | | |"
                      for rn, r in held.items()]
        c = b["metrics"].get("calibration") or {}
        if c:
            u = t.get("uncalibrated") or {}
            lines += ["", f"Calibration: {c['why']}" + (f"; on test ECE {u['ece']:.3f} → {e['ece']:.3f}, NLL {u['nll']:.3f} → {e['nll']:.3f}"
                                                       if c.get("temperature", 1.0) != 1.0 and u else "") + "."]
        lines += ["", "| rule (same test images, uncalibrated) | accuracy | NLL | ECE |", "|---|---|---|---|"]
        lines += [f"| {rn} | {r['accuracy']:.4f} | {r['nll']:.3f} | {r['ece']:.3f} |" for rn, r in t["rules"].items()]
        lines += ["", f"Gain over the best member: {t['gain_over_best_member'] * 100:+.2f} points (McNemar z = {v['z']:.1f}); mean pairwise "
                  f"disagreement {d['mean_disagreement']:.3f}; oracle accuracy {d['oracle_accuracy']:.4f}; error correlation "
                  f"{d['error_correlation'] if d['error_correlation'] is None else round(d['error_correlation'], 2)}. "
                  f"Built and scored in {b['seconds']:.0f} s.", ""]
    (RESULTS / f"ensemble-{a.tag}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

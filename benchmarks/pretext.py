"""Pretext tasks on Fashion-MNIST: a body per task pretrained on the training images (labels
unused), then linear-probe and kNN accuracy at a few labels per class beside the ImageNet body and
a random-init body, all through the product's own ``api.pretrain`` and ``api.probe``.

Rerun:  python benchmarks/pretext.py --minutes 15 --labels 1 10 100 --seeds 0 1 2 --tag fm-15min
Smaller: python benchmarks/pretext.py --minutes 3 --labels 10 --seeds 0 --tag fm-3min
With ``--train-labels 10``: then ``train --strategy auto`` at 10 labels per class from the body
with the best linear probe at the largest label count, beside the same from ImageNet, for each of
``--train-seeds`` (the labeled draw and the training seed).

Any folder: ``--data DIR/train --test DIR/test --unlabeled DIR/unlabeled`` pretrains on the
unlabeled folder (labels, if any, ignored) and probes on the labeled one, e.g. the icons folder
(``python -m benchmarks.folders icons /tmp/icons --unlabeled``):
        python benchmarks/pretext.py --data /tmp/icons/train --test /tmp/icons/test \
            --unlabeled /tmp/icons/unlabeled --labels 1 5 20 --seeds 0 1 2 --minutes 5 --tag icons

Each task: ``pretrain fashion-mnist --method TASK --from imagenet --time-budget MINUTES`` on
EfficientNet-Lite0 at ``--image-size`` (default 64 px: a third of 112 px's cost per image, so a
short budget sees more images), the first half of the stages frozen (the default). Then one
``probe`` of every body together (the same labeled draws, seeds and 10,000 test images; every
stage), and the table of the best stage per body. Results go to
benchmarks/results/pretext-<tag>.json and .md with the machine and commit.
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
from headstart import api  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="fashion-mnist", help="the labeled set probed (a built-in set or a folder)")
    ap.add_argument("--test", default=None, help="the images scored on, for a folder --data")
    ap.add_argument("--unlabeled", default=None, help="the images pretrained on (default: --data, labels ignored)")
    ap.add_argument("--tasks", nargs="+", default=["rotation", "exemplar", "patch", "dae"])
    ap.add_argument("--minutes", type=float, default=15.0, help="--time-budget of each pretraining")
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--labels", type=int, nargs="+", default=[1, 10, 100])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--stages", default="all")
    ap.add_argument("--tag", default="fm")
    ap.add_argument("--train-labels", type=int, default=0,
                    help="then train --strategy auto at this many labels per class from the best pretext body and from ImageNet (0: skip)")
    ap.add_argument("--train-seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--work", default=None, help="folder for the bodies (default: a temporary one); a finished body there is reused")
    a = ap.parse_args(argv)
    work = Path(a.work or tempfile.mkdtemp(prefix="pretext-bench-"))
    t0 = time.perf_counter()
    pretrained = {}
    for task in a.tasks:
        out = work / task
        if not (out / "model.json").is_file():
            m = api.pretrain(a.unlabeled or a.data, method=task, output=out, image_size=a.image_size, time_budget=a.minutes, progress=False,
                             overwrite=True)
        else:
            m = json.loads((out / "metrics.json").read_text())
        pretrained[task] = {k: m.get(k) for k in ("images", "epochs", "best_epoch", "seconds", "reasons", "images_per_second")}
        pretrained[task]["last"] = m["history"][-1] if m.get("history") else None
        print(json.dumps({"pretrained": task, **{k: pretrained[task][k] for k in ("images", "epochs", "seconds")}}), flush=True)
    bodies = [str(work / t) for t in a.tasks] + ["imagenet:efficientnet_lite0", "random:efficientnet_lite0"]
    res = api.probe(bodies, a.data, test=a.test, labels_per_class=a.labels, seeds=a.seeds, stages=a.stages if a.stages in ("all", "last")
                    else a.stages.split(","), image_size=a.image_size, output=work / "probe", show_progress=False)
    trained = {}
    if a.train_labels:
        k = max(a.labels)
        scores = {r["body"]: r["linear_mean"] for r in res["summary"]
                  if r["labels_per_class"] == k and r["stage"] == res["best_stage"].get(r["body"]) and r["body"] in a.tasks}
        best = max(scores, key=scores.get)
        from headstart import TrainConfig, evaluate, train

        for seed in a.train_seeds:
            for name, extra in ((f"auto from the {best} body", {"backbone_from": str(work / best)}), ("auto from ImageNet", {})):
                out = work / ("train-" + ("body" if extra else "imagenet") + f"-s{seed}")
                t = time.perf_counter()
                if not (out / "model.json").is_file():
                    train(TrainConfig(data=a.data, labels_per_class=a.train_labels, seed=seed,
                                      output=str(out), progress=False, overwrite=True, **extra))
                e = evaluate(str(out), a.test) if a.test else evaluate(str(out))
                trained.setdefault(name, []).append({"seed": seed, "accuracy": e["accuracy"], "seconds": time.perf_counter() - t,
                                                     "run": str(out)})
                print(json.dumps({"trained": name, **trained[name][-1]}), flush=True)
    info = machine_info()
    command = "python benchmarks/pretext.py " + " ".join(argv if argv is not None else sys.argv[1:])
    data = {"info": info, "command": command, "pretrained": pretrained, "probe": res, "trained": trained, "wall_s": time.perf_counter() - t0}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"pretext-{a.tag}.json").write_text(json.dumps(data, indent=2, default=str))
    lines = [
        f"# Benchmark `pretext`: {a.data}, bodies pretrained on {a.unlabeled or 'its training images'} for {a.minutes:g} min each", "",
        f"Machine: {info.get('cpu')}, {info.get('cores')} cores, GPU {info.get('gpu') or 'none'}; torch {info.get('torch')}; commit "
        f"{info.get('commit')}; {info.get('date')}. This run took {data['wall_s'] / 60:.1f} min.",
        f"Command: `{command}`", "",
        f"Probe: {res['num_test']} test images at {res['image_size']} px; linear = logistic regression (C = 1) on standardised "
        f"features; kNN = cosine, k = {res['knn']['k']}, T = {res['knn']['temperature']}; the same labeled draws for every body.", "",
        "| task | images seen per pass | passes | train s | how the budget was spent |", "|---|---|---|---|---|",
    ]
    for task, p in pretrained.items():
        lines.append(f"| {task} | {p['images']} | {p['epochs']} | {p['seconds']['train']:.0f} | {p['reasons'].get('epochs', '')} |")
    lines += ["", "Best stage per body (by mean linear accuracy at the largest label count):", "",
              "| body | stage | labels/class | linear (mean ± sd) | kNN (mean ± sd) | seeds |", "|---|---|---|---|---|---|"]
    best = res["best_stage"]
    for r in res["summary"]:
        if r["stage"] == best.get(r["body"]):
            lines.append(f"| {r['body']} | {r['stage']} | {r['labels_per_class']} | {r['linear_mean']:.4f} ± {r['linear_sd']:.4f} | "
                         f"{r['knn_mean']:.4f} ± {r['knn_sd']:.4f} | {r['seeds']} |")
    lines += ["", "Every stage:", "", "| body | stage | labels/class | linear | kNN |", "|---|---|---|---|---|"]
    lines += [f"| {r['body']} | {r['stage']} | {r['labels_per_class']} | {r['linear_mean']:.4f} | {r['knn_mean']:.4f} |" for r in res["summary"]]
    if trained:
        import statistics

        lines += ["", f"`train --strategy auto` at {a.train_labels} labels per class (labeled draw and training seed "
                  f"{a.train_seeds}; {a.test or 'official test split'}):", "",
                  "| run | test accuracy per seed | mean ± sd | s (median) |", "|---|---|---|---|"]
        for n, rs in trained.items():
            accs = [r["accuracy"] for r in rs]
            sd = statistics.stdev(accs) if len(accs) > 1 else 0.0
            lines.append(f"| {n} | {' / '.join(f'{x:.4f}' for x in accs)} | {statistics.mean(accs):.4f} ± {sd:.4f} | "
                         f"{statistics.median(r['seconds'] for r in rs):.0f} |")
        if len(trained) == 2 and len(a.train_seeds) > 1:
            (b, rb), (_, ri) = trained.items()
            diffs = [x["accuracy"] - y["accuracy"] for x, y in zip(rb, ri)]
            lines += ["", f"{b} minus ImageNet, per seed: {' / '.join(f'{d:+.4f}' for d in diffs)} (mean {statistics.mean(diffs):+.4f})."]
    (RESULTS / f"pretext-{a.tag}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

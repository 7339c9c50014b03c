"""Test accuracy and wall time of each transfer strategy at few labels per class.

Rerun:  python benchmarks/strategies.py --labels 10 100 --seeds 0
        python benchmarks/strategies.py --labels 10 --strategies partial --set lr=0.003 --tag lr3e-3

Each row trains on K labeled Fashion-MNIST images per class (chosen with the seed; the rest of
the training set is not used) and scores the run on the official 10,000-image test split. The
floor is logistic regression on raw pixels, fitted in the same process on the same labels.
Results go to benchmarks/results/<name>.json and .md with the machine, versions and commit.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from headstart import TrainConfig, evaluate, train  # noqa: E402
from headstart.data import few_shot, resolve  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def machine_info() -> dict:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        commit = ""
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": gpu,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "commit": commit,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def pixel_floor(data: str, k: int, seed: int) -> tuple[float, float]:
    from sklearn.linear_model import LogisticRegression

    t0 = time.perf_counter()
    tr = resolve(data, split="train")
    te = resolve(data, split="test")
    idx, _ = few_shot(tr.labels, k, seed)
    x = tr.images[idx].reshape(len(idx), -1) / 255.0
    clf = LogisticRegression(max_iter=2000).fit(x, tr.labels[idx])
    acc = float((clf.predict(te.images.reshape(len(te), -1) / 255.0) == te.labels).mean())
    return acc, time.perf_counter() - t0


def run_strategy(
    data: str, k: int | None, seed: int, strategy: str, *, device: str, workdir: str, extra: dict, test: str | None = None
) -> dict:
    """Train ``strategy`` on K labels per class (all labels when ``k`` is None), score it on the
    official test split (or on the ``test`` folder): one row."""
    cfg = TrainConfig(
        data=data,
        output=f"{workdir}/{strategy}-{k}-{seed}",
        overwrite=True,
        strategy=strategy,
        labels_per_class=k,
        seed=seed,
        device=device,
        progress=False,
        **extra,
    )
    t0 = time.perf_counter()
    result = train(cfg)
    train_s = time.perf_counter() - t0
    m = evaluate(result.run_dir, test, device=device)
    r = result.resolved
    return {
        "method": strategy,
        "labels_per_class": k,
        "seed": seed,
        "test_acc": m["accuracy"],
        "train_s": train_s,
        "eval_s": m["seconds"],
        "image_size": r["image_size"],
        "epochs": r["epochs"],
        "batch_size": r["batch_size"],
        "lr": r["lr"],
        "freeze_stages": r["freeze_stages"],
        "augment": r["augment"],
        "backbone_lr_mult": r["backbone_lr_mult"],
        "device": r["device"],
        "run_dir": str(result.run_dir),
    }


def parse_sets(pairs: list[str]) -> dict:
    out = {}
    for p in pairs:
        key, value = p.split("=", 1)
        for cast in (int, float):
            try:
                value = cast(value)
                break
            except ValueError:
                continue
        out[key] = value
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="fashion-mnist")
    ap.add_argument("--labels", type=int, nargs="+", default=[10, 100])
    ap.add_argument("--strategies", nargs="+", default=["knn", "linear", "partial", "full"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--set", nargs="*", default=[], help="extra TrainConfig fields, key=value")
    ap.add_argument("--tag", default="", help="suffix of the result file name")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args(argv)
    # every row computes its own features, so wall times compare strategies, not cache luck
    extra = {"feature_cache": False, **parse_sets(args.set)}
    rows = []
    info = machine_info()
    print(json.dumps(info), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for k in args.labels:
            for seed in args.seeds:
                acc, secs = pixel_floor(args.data, k, seed)
                rows.append({"method": "pixels+logreg", "labels_per_class": k, "seed": seed, "test_acc": acc, "train_s": secs})
                print(json.dumps(rows[-1]), flush=True)
                for strategy in args.strategies:
                    rows.append(run_strategy(args.data, k, seed, strategy, device=args.device, workdir=tmp, extra=extra))
                    print(json.dumps(rows[-1]), flush=True)
    name = f"strategies-{args.data.split(':')[0]}{('-' + args.tag) if args.tag else ''}"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps({"machine": info, "args": vars(args), "rows": rows}, indent=2))
    (out / f"{name}.md").write_text(to_markdown(rows, info, args))
    print((out / f"{name}.md").read_text())
    return 0


def to_markdown(rows: list[dict], info: dict, args) -> str:
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["labels_per_class"], r["method"]), []).append(r)
    lines = [
        f"# {args.data}: test accuracy by strategy (official test split)",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores, GPU {info['gpu'] or 'none'}; torch {info['torch']}; commit {info['commit']}; {info['date']}.",
        f"Command: `python benchmarks/strategies.py {' '.join(sys.argv[1:])}`",
        "",
        "| labels/class | method | test accuracy (mean ± sd over seeds) | train wall time (median s) | settings |",
        "|---|---|---|---|---|",
    ]
    for (k, method), rs in groups.items():
        accs = [r["test_acc"] for r in rs]
        sd = statistics.stdev(accs) if len(accs) > 1 else 0.0
        t = statistics.median(r["train_s"] for r in rs)
        s = rs[0]
        settings = "" if method == "pixels+logreg" else f"{s['image_size']}px, {s['epochs']} ep, bs {s['batch_size']}, lr {s['lr']:g}, frozen {s['freeze_stages']}, aug {s['augment']}"
        lines.append(f"| {k} | {method} | {statistics.mean(accs):.4f} ± {sd:.4f} (n={len(accs)}) | {t:.1f} | {settings} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())

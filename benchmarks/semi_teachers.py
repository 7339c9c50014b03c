"""Do several supervised teachers label the unlabeled pool better together than one alone?

Rerun:  python benchmarks/semi_teachers.py --seeds 0 1 2 3 --work /tmp/ens

Fashion-MNIST, 10 labels per class drawn with seed 0 (``--split-seed 0``), one ``--strategy auto``
teacher per training seed (finished runs in WORK/t<seed> are reused, not retrained). Each
teacher, and the mean of the first 2, 3, ... teachers' probabilities, is scored on the official
10,000-image test split and on a seeded draw of 10,000 images of the pool (its hidden labels):
accuracy overall and on the most confident 70 %. Results go to
benchmarks/results/semi-teachers.{json,md} with the machine, versions and commit.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from benchmarks.strategies import machine_info  # noqa: E402
from headstart import TrainConfig, train  # noqa: E402
from headstart.data import few_shot, resolve  # noqa: E402
from headstart.data.tensors import images_tensor  # noqa: E402
from headstart.predictor import Predictor  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def scores(probs: np.ndarray, truth: np.ndarray) -> dict:
    conf = probs.max(1)
    top = conf >= np.quantile(conf, 0.3)
    pred = probs.argmax(1)
    return {"all": float((pred == truth).mean()), "top70": float((pred[top] == truth[top]).mean())}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    ap.add_argument("--labels", type=int, default=10)
    ap.add_argument("--pool-draw", type=int, default=10_000)
    ap.add_argument("--work", type=Path, default=Path("/tmp/semi-teachers"))
    a = ap.parse_args(argv)
    t_all = time.perf_counter()
    full, test = resolve("fashion-mnist", split="train"), resolve("fashion-mnist", split="test")
    _, pool_idx = few_shot(full.labels, a.labels, 0)
    draw = np.random.default_rng(0).choice(pool_idx, a.pool_draw, replace=False)
    test_x, pool_x = images_tensor(test, size=None, num_workers=0), images_tensor(full.subset(draw), size=None, num_workers=0)
    test_y, pool_y = np.asarray(test.labels), np.asarray(full.labels)[draw]
    rows, probs = [], []
    for seed in a.seeds:
        run = a.work / f"t{seed}"
        t0 = time.perf_counter()
        if not (run / "model.json").is_file():
            train(TrainConfig(data="fashion-mnist", labels_per_class=a.labels, seed=seed, split_seed=0, output=str(run), progress=False,
                              method="supervised"))
        seconds = json.loads((run / "metrics.json").read_text())["seconds"]
        p = Predictor(run, device="cpu")
        probs.append((p.proba_tensor(test_x, batch_size=256), p.proba_tensor(pool_x, batch_size=256)))
        rows.append({"teachers": f"seed {seed} alone", "n": 1, "test": scores(probs[-1][0], test_y)["all"],
                     **{f"pool_{k}": v for k, v in scores(probs[-1][1], pool_y).items()}, "train_s": round(seconds, 1),
                     "scored_s": round(time.perf_counter() - t0, 1)})
        print(json.dumps(rows[-1]), flush=True)
    for n in range(2, len(probs) + 1):
        t, q = np.mean([p[0] for p in probs[:n]], 0), np.mean([p[1] for p in probs[:n]], 0)
        rows.append({"teachers": f"mean of seeds {', '.join(map(str, a.seeds[:n]))}", "n": n, "test": scores(t, test_y)["all"],
                     **{f"pool_{k}": v for k, v in scores(q, pool_y).items()}})
        print(json.dumps(rows[-1]), flush=True)
    info = machine_info()
    minutes = (time.perf_counter() - t_all) / 60
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "semi-teachers.json").write_text(json.dumps({"machine": info, "argv": sys.argv[1:], "rows": rows}, indent=2))
    lines = [
        "# Benchmark `semi_teachers`: one teacher or several, on Fashion-MNIST's pool",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores; torch {info['torch']}; commit {info['commit']}; {info['date']}. "
        f"This run took {minutes:.1f} min (finished teachers reused).",
        f"Command: `python benchmarks/semi_teachers.py {' '.join(sys.argv[1:])}`",
        "",
        f"{a.labels} labels per class (seed 0's draw, shared by every teacher: `--split-seed 0`); `--strategy auto` teachers; "
        f"pool: a seeded draw of {a.pool_draw} of the {len(pool_idx)} unlabeled training images, scored by their hidden labels.",
        "",
        "| teachers | test accuracy | pseudo-labels right (pool) | right on the most confident 70 % | training s |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['teachers']} | {r['test']:.4f} | {r['pool_all']:.1%} | {r['pool_top70']:.1%} | {r.get('train_s', '')} |")
    (RESULTS / "semi-teachers.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

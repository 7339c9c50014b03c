"""Augmentation policies, CutMix/MixUp and test-time augmentation on Fashion-MNIST, and the
label-safety audit on digits and Fashion-MNIST.

    python -m benchmarks.augment                      # everything below (~1 h on 2 cores)
    python -m benchmarks.augment --cases fashion-mnist@10 --variants none light
    python -m benchmarks.augment --audit-only

Every variant trains with ``--strategy auto`` (the recipe a user gets; the advisor's
measurement is cached, so every variant of a case fine-tunes the same layers at the same rates)
and differs only in ``--augment`` / ``--cutmix`` / ``--mixup``. Each run is scored on the same
3,000 Fashion-MNIST test images (300 per class, a fixed draw: 10k images × 3 views would cost
more than the training), without and with test-time augmentation (identity + the run's
label-safe views, default ``hflip,crop:0.85``), so TTA on/off is a paired comparison.

The audit rows train a model without augmentation (``--augment none``) and audit it on test
images: digits with every training label (6 and 9 under rotation are the expected finding),
Fashion-MNIST at 100 labels per class (vertical flips expected to hurt some classes).
Rows are appended to ``results/augment.jsonl`` as they finish; the summary goes to
``results/augment.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402

from benchmarks.strategies import machine_info  # noqa: E402
from headstart.api import Predictor, augment_audit, train  # noqa: E402
from headstart.config import TrainConfig  # noqa: E402
from headstart.data import resolve  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
VARIANTS = {
    "none": {"augment": "none"},
    "light": {"augment": "light"},
    "standard": {"augment": "standard"},
    "strong": {"augment": "strong"},
    "standard+cutmix": {"augment": "standard", "cutmix": 1.0},
    "standard+mixup": {"augment": "standard", "mixup": 0.2},
}
CASES = {"fashion-mnist@10": (10, [0, 1]), "fashion-mnist@100": (100, [0])}
TEST_PER_CLASS = 300


def test_subset():
    te = resolve("fashion-mnist", split="test")
    rng = np.random.default_rng(0)
    keep = np.sort(np.concatenate([rng.permutation(np.flatnonzero(te.labels == c))[:TEST_PER_CLASS] for c in range(len(te.classes))]))
    return te.subset(keep)


def run_variant(case: str, k: int, seed: int, variant: str, workdir: str, test) -> dict:
    cfg = TrainConfig(
        data="fashion-mnist", output=f"{workdir}/{case}-{variant}-{seed}", overwrite=True, labels_per_class=k, seed=seed,
        device="cpu", progress=False, **VARIANTS[variant],
    )
    t0 = time.perf_counter()
    result = train(cfg)
    train_s = time.perf_counter() - t0
    predictor = Predictor(result.run_dir, device="cpu")
    views, left_out = predictor.tta_views()
    t0 = time.perf_counter()
    per_view = predictor.proba_views(predictor.images_of(test), views)
    eval_s = time.perf_counter() - t0
    acc = lambda p: float((p.argmax(1) == test.labels).mean())  # noqa: E731
    r = result.resolved
    return {
        "case": case, "variant": variant, "seed": seed, "labels_per_class": k,
        "test_acc": acc(per_view[0]), "test_acc_tta": acc(np.mean(per_view, axis=0)),
        "per_view": {v.name: acc(p) for v, p in zip(views, per_view)}, "views_left_out": left_out,
        "train_s": train_s, "eval_s_all_views": eval_s, "strategy": r["strategy"], "freeze_stages": r["freeze_stages"],
        "backbone_lr_mult": r["backbone_lr_mult"], "epochs": r["epochs"], "image_size": r["image_size"],
        "augment": r["augment"], "cutmix": r["cutmix"], "mixup": r["mixup"], "test_images": len(test),
    }


def run_audits(workdir: str, log) -> list[dict]:
    rows = []
    for name, data, k in (("digits@50", "digits", 50), ("fashion-mnist@100", "fashion-mnist", 100)):
        t0 = time.perf_counter()
        # the fashion-mnist@100 `none` run of the policy rows is reused when this process trained it
        out = Path(f"{workdir}/fashion-mnist@100-none-0") if data == "fashion-mnist" else Path(f"{workdir}/audit-{data}")
        if not (out / "model.json").is_file():
            train(TrainConfig(data=data, output=str(out), overwrite=True, labels_per_class=k, augment="none", device="cpu",
                              progress=False))
        train_s = time.perf_counter() - t0
        val_acc = json.loads((out / "metrics.json").read_text())["val"]["accuracy"]
        audit = augment_audit(out, device="cpu", per_class=100)
        row = {"audit": name, "train_s": train_s, "val_acc": val_acc, **{k2: audit[k2] for k2 in (
            "data", "num_images", "accuracy", "families", "flagged", "recommended_invariances", "rows", "seconds")}}
        log(row)
        rows.append(row)
    return rows


def summarise(rows: list[dict]) -> list[dict]:
    out = []
    for case in CASES:
        base = {r["seed"]: r for r in rows if r.get("case") == case and r["variant"] == "none"}
        for variant in VARIANTS:
            rs = [r for r in rows if r.get("case") == case and r["variant"] == variant]
            if not rs:
                continue
            diffs = [r["test_acc"] - base[r["seed"]]["test_acc"] for r in rs if r["seed"] in base]
            out.append({
                "case": case, "variant": variant, "seeds": [r["seed"] for r in rs],
                "test_acc": statistics.mean(r["test_acc"] for r in rs),
                "test_acc_tta": statistics.mean(r["test_acc_tta"] for r in rs),
                "vs_none": statistics.mean(diffs) if diffs else None,
                "tta_gain": statistics.mean(r["test_acc_tta"] - r["test_acc"] for r in rs),
                "per_seed": [round(r["test_acc"], 4) for r in rs],
                "train_s": statistics.median(r["train_s"] for r in rs),
                "recipe": f"{rs[0]['strategy']} ({rs[0]['freeze_stages']} frozen), {rs[0]['image_size']}px, {rs[0]['epochs']} epochs",
            })
    return out


def to_markdown(summary: list[dict], audits: list[dict], info: dict, command: str, wall_s: float, resumed: bool = False) -> str:
    lines = [
        "# Augmentation: policies, CutMix/MixUp, test-time augmentation, label-safety audit", "",
        f"`{command}` — {info['cpu']}, {info['cores']} cores, torch {info['torch']}, commit {info.get('commit', '')}, "
        f"{wall_s / 60:.1f} min"
        + (" for this invocation; the other rows come from earlier invocations kept in `augment.jsonl` (`--resume`)." if resumed else "."),
        "",
        f"Test accuracy on the same {TEST_PER_CLASS * 10} Fashion-MNIST test images (300 per class) for every row; "
        "`vs none` is the paired difference to the `none` run of the same seed (points); TTA = identity + label-safe views "
        "(default hflip, crop:0.85).", "",
        "| case | variant | test acc | vs none | with TTA | TTA gain | per seed | train s (median) | recipe |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summary:
        vs = "—" if s["vs_none"] is None or s["variant"] == "none" else f"{s['vs_none'] * 100:+.1f}"
        lines.append(
            f"| {s['case']} | {s['variant']} | {s['test_acc']:.4f} | {vs} | {s['test_acc_tta']:.4f} | {s['tta_gain'] * 100:+.1f} | "
            f"{', '.join(f'{v:.3f}' for v in s['per_seed'])} | {s['train_s']:.0f} | {s['recipe']} |"
        )
    for a in audits:
        lines += ["", f"## Audit: {a['audit']} (model trained with `--augment none`, val acc {a['val_acc']:.3f}; "
                  f"{a['num_images']} images of {a['data']}, accuracy {a['accuracy']:.3f}; {a['seconds']:.0f} s)", "",
                  "| transform | accuracy | changed | label change (class → to, acc before → after) | erased | fragile |",
                  "|---|---|---|---|---|---|"]
        for row in a["rows"]:
            def cells(kind, row=row):
                return ", ".join(f"{c['class']}→{c['flips_to']} ({c['accuracy']:.2f}→{c['accuracy_transformed']:.2f})"
                                 for c in row["per_class"] if c["kind"] == kind) or "-"
            lines.append(f"| {row['family']}:{row['magnitude']:g} | {row['accuracy_transformed']:.3f} | {row['flip_rate']:.0%} | "
                         f"{cells('label change')} | {cells('erased')} | {', '.join(row['fragile_classes']) or '-'} |")
        lines += ["", f"Flagged: {', '.join(a['flagged']) or 'none'}; supported `--invariances '{a['recommended_invariances']}'`."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    ap.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    ap.add_argument("--seeds", type=int, nargs="+", help="only these seeds (default: each case's)")
    ap.add_argument("--resume", action="store_true", help="keep the rows already in results/augment.jsonl, run the rest")
    ap.add_argument("--audit-only", action="store_true")
    ap.add_argument("--no-audit", action="store_true")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args(argv)
    command = "python -m benchmarks.augment" + ("" if argv is None else " " + " ".join(argv))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    jsonl = out / "augment.jsonl"
    t_start = time.perf_counter()

    def log(row: dict) -> None:
        with jsonl.open("a") as f:
            f.write(json.dumps(row) + "\n")
        if "variant" in row:
            print(f"{row['case']} {row['variant']} seed {row['seed']}: {row['test_acc']:.4f} (TTA {row['test_acc_tta']:.4f}), "
                  f"train {row['train_s']:.0f} s", flush=True)
        else:
            print(f"audit {row['audit']}: flagged {row['flagged']}", flush=True)

    rows: list[dict] = []
    audits: list[dict] = []
    if args.resume and jsonl.is_file():
        earlier = [json.loads(line) for line in jsonl.read_text().splitlines()]
        rows = [r for r in earlier if "variant" in r]
        audits = [r for r in earlier if "audit" in r]  # kept unless audited again
    elif jsonl.is_file():
        jsonl.unlink()
    done = {(r["case"], r["variant"], r["seed"]) for r in rows}
    with tempfile.TemporaryDirectory() as workdir:
        # policy rows first, then the audits (which reuse the fashion-mnist@100 `none` model)
        if not args.audit_only:
            test = test_subset()
            for case in args.cases:
                k, seeds = CASES[case]
                for seed in args.seeds or seeds:
                    for variant in args.variants:
                        if (case, variant, seed) in done:
                            continue
                        row = run_variant(case, k, seed, variant, workdir, test)
                        log(row)
                        rows.append(row)
        if not args.no_audit:
            audits = run_audits(workdir, log)
    wall = time.perf_counter() - t_start
    info = machine_info()
    summary = summarise(rows)
    (out / "augment.json").write_text(json.dumps(
        {"machine": info, "command": command, "wall_s": wall, "summary": summary, "rows": rows, "audits": audits}, indent=2))
    (out / "augment.md").write_text(to_markdown(summary, audits, info, command, wall, resumed=args.resume))
    print((out / "augment.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

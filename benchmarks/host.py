"""Host-side costs: glibc's allocator settings, and hashing image files while they are checked.

    python -m benchmarks.host allocator   # ~3 min: scoring and training img/s, glibc defaults vs tuned
    python -m benchmarks.host hashing     # ~5 min: checking 60,000 PNG files with and without digests

``allocator`` runs each measurement in a fresh process (glibc's thresholds are set once per
process), alternating the two settings for ``--rounds`` rounds, and reports medians and the
ratio. ``hashing`` writes Fashion-MNIST's 60,000 training images as PNG files, then checks the
folder the way ``headstart train`` does (every file decoded, in threads) three ways, alternating:
as before digests (Pillow opens the path), reading the bytes once with the hash replaced by a
no-op, and as now (bytes read once, SHA-256); it reports the medians and what each step adds.

Each writes ``benchmarks/results/host-<name>.{json,md}`` with the machine it ran on.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"

_SCORE = r"""
import json, os, sys, time, resource, torch
from headstart.backbones import create_backbone
from headstart.engine import Batches, predict_logits, pick_device
from headstart.engine.prepare import Prepare
from headstart.engine.allocator import tune_host_allocator
device = pick_device("cpu")  # tunes the allocator unless HEADSTART_MALLOC=default
tuned = tune_host_allocator()
torch.manual_seed(0)
model = create_backbone("efficientnet_lite0", num_classes=10).to(memory_format=torch.channels_last)
prepare = Prepare(model.preprocess, 112, device)
x = torch.randint(0, 256, (1024, 3, 28, 28), dtype=torch.uint8)
y = torch.zeros(len(x), dtype=torch.long)
predict_logits(model, Batches(x[:128], y[:128], batch_size=64), prepare=prepare, device=device)  # warm-up
r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
predict_logits(model, Batches(x, y, batch_size=64), prepare=prepare, device=device)
score_s, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
model.freeze(4)
model.train()
opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
xs = x[:512]
def steps(n):
    for i in range(n):
        xb = prepare(xs[(i * 16) % 512:(i * 16) % 512 + 16])
        loss = torch.nn.functional.cross_entropy(model(xb), y[:16])
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
steps(4)
r2, t2 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
steps(32)
train_s, r3 = time.perf_counter() - t2, resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"tuned": tuned, "score_img_s": len(x) / score_s, "score_sys_s": r1.ru_stime - r0.ru_stime,
                  "train_img_s": 32 * 16 / train_s, "train_sys_s": r3.ru_stime - r2.ru_stime}))
"""


def _machine() -> dict:
    from benchmarks.strategies import machine_info

    return machine_info()


def allocator(rounds: int) -> dict:
    rows = []
    for r in range(rounds):
        for setting in ("default", "tuned"):
            env = {**os.environ, "HF_HUB_OFFLINE": "1"}
            if setting == "default":
                env["HEADSTART_MALLOC"] = "default"
            else:
                env.pop("HEADSTART_MALLOC", None)
            out = subprocess.run([sys.executable, "-c", _SCORE], env=env, capture_output=True, text=True, check=True)
            row = {"round": r, "setting": setting, **json.loads(out.stdout.strip().splitlines()[-1])}
            print(json.dumps(row), flush=True)
            rows.append(row)
    summary = {}
    for setting in ("default", "tuned"):
        mine = [x for x in rows if x["setting"] == setting]
        summary[setting] = {k: statistics.median(x[k] for x in mine) for k in ("score_img_s", "score_sys_s", "train_img_s", "train_sys_s")}
    summary["score_ratio"] = summary["tuned"]["score_img_s"] / summary["default"]["score_img_s"]
    summary["train_ratio"] = summary["tuned"]["train_img_s"] / summary["default"]["train_img_s"]
    md = [
        "# Host allocator: glibc defaults vs headstart's thresholds",
        "",
        f"Machine: {_machine()}. `python -m benchmarks.host allocator --rounds {rounds}`; each cell is the median of "
        f"{rounds} fresh processes, the two settings alternating. EfficientNet-Lite0 (ImageNet weights), 112 px input from "
        "28-px uint8 images; scoring 1,024 images at batch 64 (`predict_logits`); training 32 steps of batch 16 with "
        "4 stages frozen (AdamW).",
        "",
        "| setting | scoring img/s | system time (s) | training img/s | system time (s) |",
        "|---|---|---|---|---|",
    ]
    for setting in ("default", "tuned"):
        s = summary[setting]
        md.append(f"| {setting} | {s['score_img_s']:.0f} | {s['score_sys_s']:.1f} | {s['train_img_s']:.0f} | {s['train_sys_s']:.1f} |")
    md += ["", f"Ratio tuned/default: scoring {summary['score_ratio']:.2f}×, training {summary['train_ratio']:.2f}×."]
    return {"rows": rows, "summary": summary, "markdown": "\n".join(md) + "\n"}


def hashing(rounds: int, n: int) -> dict:
    from PIL import Image

    from headstart.data import BUILTIN_DATASETS, sources
    from headstart.data._progress import default_workers, map_with_progress

    train = BUILTIN_DATASETS.get("fashion-mnist")(split="train", root=None)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "fmnist"
        t0 = time.perf_counter()
        paths = []
        for i in range(min(n, len(train))):
            d = root / str(int(train.labels[i]))
            d.mkdir(parents=True, exist_ok=True)
            p = d / f"{i:05d}.png"
            Image.fromarray(train.images[i]).save(p)
            paths.append(str(p))
        write_s = time.perf_counter() - t0
        total_bytes = sum(os.path.getsize(p) for p in paths)

        from PIL import ImageOps

        from headstart.data import decode

        def pillow_reads_the_path(path: str):
            """The check before digests, as it was: Pillow opens the path and reads the file
            itself, under the same pixel-limit lock."""
            decode._check_file(path)
            with decode._PIXEL_LIMIT_LOCK:
                saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
                try:
                    img = Image.open(path)
                finally:
                    Image.MAX_IMAGE_PIXELS = saved
            with img:
                img.load()
                upright = ImageOps.exif_transpose(img)
                decode._to_rgb(upright if upright is not None else img)

        class _NoHash:
            def update(self, _data: bytes) -> None: ...

            def hexdigest(self) -> str:
                return "-"

        class _NoHashlib:
            sha256 = staticmethod(lambda data=b"": _NoHash())

        variants = {  # name: (check, whether SHA-256 is replaced by a no-op for the whole pass)
            "Pillow reads the path, no digest (before)": (pillow_reads_the_path, False),
            "bytes read once, hash skipped": (sources._check_decodes, True),
            "bytes read once + SHA-256 (now)": (sources._check_decodes, False),
        }
        rows = []
        for r in range(rounds):
            for setting, (fn, no_hash) in variants.items():
                real = decode.hashlib
                decode.hashlib = _NoHashlib if no_hash else real
                try:
                    t0 = time.perf_counter()
                    map_with_progress(fn, paths, description="check", num_workers=default_workers())
                    rows.append({"round": r, "setting": setting, "seconds": time.perf_counter() - t0})
                finally:
                    decode.hashlib = real
                print(json.dumps(rows[-1]), flush=True)
        import hashlib

        t0 = time.perf_counter()
        for p in paths:
            hashlib.sha256(Path(p).read_bytes()).digest()
        hash_only_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        ds = sources.load_folder(root)
        load_s = time.perf_counter() - t0
        assert len(ds) == len(paths) and ds.digests is not None and all(ds.digests)
    names = list(dict.fromkeys(x["setting"] for x in rows))
    med = {s: statistics.median(x["seconds"] for x in rows if x["setting"] == s) for s in names}
    summary = {"files": len(paths), "bytes": total_bytes, "write_s": write_s, "median_s": med,
               "overhead": med[names[2]] / med[names[0]] - 1, "hash_only_s": hash_only_s,
               "load_folder_s": load_s}
    md = [
        "# Content digests while checking image files",
        "",
        f"Machine: {_machine()}. `python -m benchmarks.host hashing --rounds {rounds}`: {len(paths):,} Fashion-MNIST "
        f"training images as PNG files ({total_bytes / 1e6:.1f} MB), every file decoded in {default_workers()} threads as "
        "`headstart train` checks a folder; the three ways alternate, medians of "
        f"{rounds} rounds.",
        "",
        "| check | median seconds |",
        "|---|---|",
        *[f"| {k} | {v:.2f} |" for k, v in med.items()],
        "",
        f"Now vs before: {summary['overhead'] * 100:+.1f} %; the hash alone: "
        f"{(med[names[2]] / med[names[1]] - 1) * 100:+.1f} % (now vs hash skipped). SHA-256 alone over the same files, one thread "
        f"(reading included): {hash_only_s:.2f} s. `load_folder` on the folder (walk, check, digests): {load_s:.2f} s.",
    ]
    return {"rows": rows, "summary": summary, "markdown": "\n".join(md) + "\n"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["allocator", "hashing"])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--files", type=int, default=60_000)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    res = allocator(args.rounds) if args.what == "allocator" else hashing(args.rounds, args.files)
    res["machine"] = _machine()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"host-{args.what}.md").write_text(res.pop("markdown"))
    (args.out / f"host-{args.what}.json").write_text(json.dumps(res, indent=2))
    print((args.out / f"host-{args.what}.md").read_text())


if __name__ == "__main__":
    main()

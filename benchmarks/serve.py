"""The prediction server under load on loopback: ``headstart serve`` (the real command, in its own
process) on the Lite0 run of ``benchmarks/deploy.py``, 8 concurrent clients for ``--seconds``,
each sending Fashion-MNIST test images as PNG bytes, with every ``--bad-every``-th request a bad
one (empty, not an image, a decompression bomb, too large, wrong content type). Sustained
requests per second, p50/p99 latency of the good ones, and the status codes of everything.

Rerun:   python benchmarks/serve.py --tag fm      (after benchmarks/deploy.py has trained its run)
Results: benchmarks/results/serve-<tag>.json and .md.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from benchmarks.strategies import machine_info  # noqa: E402
from headstart.data import resolve  # noqa: E402
from headstart.report.browser import _free_port  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    import httpx

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tag", default="fm")
    ap.add_argument("--run", default="/tmp/headstart-bench-deploy/lite0-112")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--bad-every", type=int, default=10)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--int8", action="store_true")
    args = ap.parse_args()
    test = resolve("fashion-mnist", split="test")
    pngs = []
    for i in range(200):
        buf = io.BytesIO()
        Image.fromarray(test.images[i]).save(buf, format="PNG")
        pngs.append((buf.getvalue(), test.classes[int(test.labels[i])]))
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    bomb = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 40000, 40000, 8, 2, 0, 0, 0)) + chunk(b"IEND", b"")
    bad = [("empty", b"", "image/png", 400), ("not an image", b"junk bytes", "image/png", 422), ("bomb", bomb, "image/png", 422),
           ("too large", b"x" * (11 * 1024 * 1024), "image/png", 413), ("wrong type", b"hello", "text/plain", 415)]
    port = _free_port()
    cmd = [sys.executable, "-m", "headstart", "serve", args.run, "--port", str(port), "--workers", str(args.workers)] + (["--int8"] if args.int8 else [])
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        t0 = time.perf_counter()
        while True:
            try:
                if httpx.get(base + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.perf_counter() - t0 > 300:
                raise SystemExit(f"the server did not start: {proc.stderr.read() if proc.stderr else ''}")
            time.sleep(0.2)
        start_s = time.perf_counter() - t0

        def client(k: int) -> list[tuple[str, int, int, float, bool]]:
            out = []
            end = time.perf_counter() + args.seconds
            j = 0
            with httpx.Client(timeout=60) as c:
                while time.perf_counter() < end:
                    j += 1
                    if j % args.bad_every == 0:
                        name, body, ctype, want = bad[(k + j) % len(bad)]
                        t = time.perf_counter()
                        r = c.post(base + "/predict", content=body, headers={"content-type": ctype})
                        out.append((name, r.status_code, want, time.perf_counter() - t, r.status_code == want))
                    else:
                        png, label = pngs[(k * 37 + j) % len(pngs)]
                        t = time.perf_counter()
                        r = c.post(base + "/predict?top_k=1", content=png, headers={"content-type": "image/png"})
                        ok = r.status_code == 200
                        top = r.json()["predictions"][0]["top"][0]["class"] if ok else None
                        out.append(("good", r.status_code, 200, time.perf_counter() - t, ok and top == label))
            return out

        wall = time.perf_counter()
        with ThreadPoolExecutor(args.clients) as pool:
            rows = [r for part in pool.map(client, range(args.clients)) for r in part]
        wall = time.perf_counter() - wall
        health = httpx.get(base + "/health").json()
        alive = proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    good = [r for r in rows if r[0] == "good"]
    lat = np.asarray([r[3] for r in good])
    res = {"tag": args.tag, "machine": machine_info(), "run": args.run, "clients": args.clients, "seconds": wall, "workers": args.workers,
           "int8": args.int8, "start_s": start_s, "requests": len(rows), "requests_per_s": len(rows) / wall,
           "good": len(good), "good_per_s": len(good) / wall, "p50_ms": float(np.percentile(lat, 50) * 1000), "p99_ms": float(np.percentile(lat, 99) * 1000),
           "good_correct": float(np.mean([r[4] for r in good])), "status": {f"{k[0]} → {k[1]}": v for k, v in Counter((r[0], r[1]) for r in rows).items()},
           "bad_as_expected": all(r[4] for r in rows if r[0] != "good"), "server_alive": alive, "engine_calls": health["engine_calls"] if args.workers == 1 else None,
           "images": health["images"] if args.workers == 1 else None}  # /health answers for the one worker that took the request
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"serve-{args.tag}.json").write_text(json.dumps(res, indent=1))
    m = res["machine"]
    calls = f"{res['engine_calls']} / {res['images']}" if args.workers == 1 else "— (each worker counts its own)"
    lines = ["# The prediction server under load (loopback)", "",
             f"Machine: {m.get('cpu')}, {m.get('cores')} cores, GPU: {m.get('gpu') or 'none'}; commit {m.get('commit')}. Rerun: "
             f"`python benchmarks/serve.py --tag {args.tag}`.", "",
             f"`headstart serve` ({args.workers} worker(s), onnxruntime{' INT8' if args.int8 else ' FP32'}) on the Lite0 112-px Fashion-MNIST run; "
             f"{args.clients} concurrent clients for {wall:.0f} s, every {args.bad_every}th request a bad one.", "",
             "| requests/s (all) | good requests/s | p50 ms | p99 ms | good answered right* | bad answered as expected | engine calls / images |",
             "|---|---|---|---|---|---|---|",
             f"| {res['requests_per_s']:.1f} | {res['good_per_s']:.1f} | {res['p50_ms']:.0f} | {res['p99_ms']:.0f} | {res['good_correct']:.3f} | "
             f"{res['bad_as_expected']} | {calls} |", "",
             "\\* the model's top class equals the image's true label (the model's accuracy, not the server's); every good request got a 200.", "",
             "Status codes: " + ", ".join(f"{k}: {v}" for k, v in sorted(res["status"].items())) + f". Server alive after the run: {alive}."]
    (RESULTS / f"serve-{args.tag}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))

if __name__ == "__main__":
    main()

"""``headstart serve``: the HTTP service answers good requests with the model's own answers and
bad ones with a 4xx naming the problem, keeps serving through both under concurrent load on
loopback with memory flat, batches concurrent requests, and its upload page works in Chromium."""

from __future__ import annotations

import io
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from headstart import TrainConfig, api, train

fastapi = pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from headstart.serve.app import create_app  # noqa: E402


@pytest.fixture(scope="module")
def run(shapes_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("srv") / "run"
    train(TrainConfig(data=str(shapes_folder), output=str(out), backbone="resnet_small", strategy="full", epochs=2, image_size=48,
                      progress=False, device="cpu"))
    return out


def _png(seed=0, size=(50, 40)):
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3)).astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _bomb():
    """A valid PNG header claiming 40,000 × 40,000 pixels (1.6 G > Pillow's limit) in a few bytes."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 40000, 40000, 8, 2, 0, 0, 0)) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def client(run):
    with TestClient(create_app(run, max_bytes=200_000)) as c:
        yield c


def test_health_model_and_page(client, run):
    h = client.get("/health").json()
    assert h["status"] == "ok" and h["classes"] == 3 and h["engine"] == "onnxruntime"
    m = client.get("/model").json()
    assert m["metadata"]["classes"] == ["disc", "square", "stripes"] and m["card"].startswith("---\n")
    page = client.get("/")
    assert page.status_code == 200 and "<form" in page.text and "disc, square, stripes" in page.text


def test_answers_are_the_models(client, run, shapes_folder):
    files = [shapes_folder / "disc" / "0.jpg", shapes_folder / "square" / "1.png", shapes_folder / "stripes" / "3.webp"]
    want = {r["path"].split("/")[-2] + "/" + r["path"].split("/")[-1]: r["top"]
            for r in api.predict(run, [str(f) for f in files], top_k=3, engine="onnxruntime")["predictions"]}
    r = client.post("/predict?top_k=3", files=[("files", (f"{f.parent.name}/{f.name}", f.read_bytes())) for f in files])
    assert r.status_code == 200
    got = {p["name"]: p["top"] for p in r.json()["predictions"]}
    assert set(got) == set(want)
    for k in want:
        assert [t["class"] for t in got[k]] == [t["class"] for t in want[k]]
        np.testing.assert_allclose([t["probability"] for t in got[k]], [t["probability"] for t in want[k]], atol=1e-5)
    raw = client.post("/predict?top_k=1", content=files[0].read_bytes(), headers={"content-type": "image/jpeg"})
    assert raw.status_code == 200 and raw.json()["predictions"][0]["top"][0]["class"] == want["disc/0.jpg"][0]["class"]


@pytest.mark.parametrize("kwargs,status,needle", [
    ({"content": b"", "headers": {"content-type": "image/png"}}, 400, "no body"),
    ({"content": b"hello", "headers": {"content-type": "text/plain"}}, 415, "text/plain"),
    ({"content": b"x" * 300_000, "headers": {"content-type": "image/png"}}, 413, "limit"),
    ({"content": b"not an image at all", "headers": {"content-type": "image/png"}}, 422, "not an image"),
    ({"content": _png()[:60], "headers": {"content-type": "image/png"}}, 422, "truncated"),
    ({"content": _bomb(), "headers": {"content-type": "image/png"}}, 422, "pixels"),
    ({"files": {"note": (None, "text only")}}, 400, "no files"),
    ({"data": {"field": "text only"}}, 415, "urlencoded"),
])
def test_bad_requests_are_4xx_json_naming_the_problem_and_the_server_keeps_serving(client, kwargs, status, needle):
    r = client.post("/predict", **kwargs)
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error", "detail"} and needle in (body["error"] + " " + body["detail"]), body
    ok = client.post("/predict", content=_png(), headers={"content-type": "image/png"})
    assert ok.status_code == 200


def test_a_body_without_content_length_is_limited_while_it_is_read(client):
    chunks = (b"x" * 100_000 for _ in range(3))  # chunked transfer: no Content-Length to refuse it by
    r = client.post("/predict", content=chunks, headers={"content-type": "image/png"})
    assert r.status_code == 413 and "exceeds the limit" in r.json()["detail"]


def test_top_k_is_checked(client):
    r = client.post("/predict?top_k=9", content=_png(), headers={"content-type": "image/png"})
    assert r.status_code == 400 and "top_k" in r.json()["detail"]


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        line = next(x for x in f if x.startswith("VmRSS"))
    return int(line.split()[1]) / 1024


def test_a_bounded_load_on_loopback(run):
    import httpx
    import uvicorn

    from headstart.report.browser import _free_port

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(run, max_bytes=200_000), host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            if httpx.get(base + "/health").status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.05)
    good = [_png(seed) for seed in range(8)]
    reference = {}
    with httpx.Client() as c:
        for i, g in enumerate(good):
            reference[i] = c.post(base + "/predict?top_k=1", content=g, headers={"content-type": "image/png"}).json()["predictions"][0]["top"][0]["class"]
    bad = [(b"", 400), (b"junk", 422), (_bomb(), 422), (b"x" * 300_000, 413)]

    def client_job(k: int) -> list[tuple[bool, int, int]]:
        out = []
        with httpx.Client(timeout=30) as c:
            for j in range(12):
                if (k + j) % 3 == 0:
                    body, want = bad[(k + j) % len(bad)]
                    r = c.post(base + "/predict", content=body, headers={"content-type": "image/png"})
                    out.append((False, r.status_code, want))
                else:
                    i = (k * 7 + j) % len(good)
                    r = c.post(base + "/predict?top_k=1", content=good[i], headers={"content-type": "image/png"})
                    ok = r.status_code == 200 and r.json()["predictions"][0]["top"][0]["class"] == reference[i]
                    out.append((True, 200 if ok else r.status_code, 200))
        return out

    try:
        with ThreadPoolExecutor(8) as pool:  # a first round warms every allocator up
            list(pool.map(client_job, range(8)))
        before = _rss_mb()
        with ThreadPoolExecutor(8) as pool:
            results = [r for rows in pool.map(client_job, range(8)) for r in rows]
        after = _rss_mb()
        health = httpx.get(base + "/health").json()
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert len(results) == 96
    for is_good, got, want in results:
        assert got == want, (is_good, got, want)
    assert after - before < 40, (before, after)  # memory flat across a round of 96 requests
    assert health["status"] == "ok" and health["engine_calls"] < health["images"]  # concurrent requests shared engine calls


def test_the_upload_page_works_in_chromium(run):
    from headstart.report.browser import _free_port, find_browser, render_check

    if find_browser() is None:
        assert not os.environ.get("HEADSTART_REQUIRE_BROWSER"), "CI must check the page: apt-get install chromium chromium-driver"
        pytest.skip("Chromium/chromedriver not installed (apt-get install chromium chromium-driver)")
    import uvicorn

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(run), host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    time.sleep(1.0)
    script = """
const done = arguments[arguments.length - 1];
const c = document.createElement('canvas'); c.width = 40; c.height = 40;
const g = c.getContext('2d'); g.fillStyle = '#fff'; g.fillRect(0, 0, 40, 40); g.fillStyle = '#000'; g.fillRect(10, 10, 20, 20);
c.toBlob(async blob => {
  const form = new FormData(); form.append('files', blob, 'drawn.png');
  const j = await window.headstartSend(form);
  done({json: j, shown: document.getElementById('out').innerText, form: !!document.querySelector('input[type=file]')});
}, 'image/png');
"""
    try:
        seen = render_check(f"http://127.0.0.1:{port}/", script=script)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    res = seen["script_result"]
    assert res["form"] and res["json"]["predictions"][0]["name"] == "drawn.png"
    top = res["json"]["predictions"][0]["top"][0]["class"]
    assert top in ("disc", "square", "stripes") and "drawn.png" in res["shown"] and top in res["shown"]


def test_serve_with_two_workers_from_the_command_line(run):
    import subprocess
    import sys

    import httpx

    from headstart.report.browser import _free_port

    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "headstart", "serve", str(run), "--port", str(port), "--workers", "2"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.3)
        with httpx.Client() as c:
            answers = [c.post(f"http://127.0.0.1:{port}/predict", content=_png(i), headers={"content-type": "image/png"}) for i in range(6)]
            bad = c.post(f"http://127.0.0.1:{port}/predict", content=b"junk", headers={"content-type": "image/png"})
        assert all(a.status_code == 200 and len(a.json()["predictions"][0]["top"]) == 3 for a in answers)
        assert bad.status_code == 422
    finally:
        proc.terminate()
        proc.wait(timeout=30)

"""Open a report in headless Chromium (through chromedriver's WebDriver protocol) to prove it
renders: which sections are on the page, whether every image decoded, and a screenshot.

Only the standard library speaks to chromedriver (plain HTTP + JSON), so no browser-automation
package is needed. Chromium starts with the flags that keep a headless run quiet and offline
(no first-run dialogs, no background networking, no component updates, no sync) and a fresh
profile folder that is removed afterwards.
"""

from __future__ import annotations

import base64
import json
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from ..errors import HeadstartError

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
]

_CHECK = """
const imgs = Array.from(document.images);
return {
  title: document.title,
  sections: Array.from(document.querySelectorAll('section')).map(s => [s.id, (s.querySelector('h2')||{}).textContent || '']),
  images: imgs.map(i => ({alt: i.alt, complete: i.complete, width: i.naturalWidth, height: i.naturalHeight,
                          shown: i.getBoundingClientRect().width})),
  height: Math.max(document.body.scrollHeight, document.documentElement.scrollHeight),
};
"""


def find_browser() -> tuple[str, str] | None:
    """Paths of chromium and chromedriver, or ``None`` when either is missing."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _call(base: str, method: str, path: str, body: dict | None = None, timeout: float = 60) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        out = json.loads(r.read().decode() or "{}")
    return out.get("value")


def render_check(html_path: str | Path, *, screenshot: str | Path | None = None, width: int = 1280, max_height: int = 16000,
                 script: str | None = None) -> dict[str, Any]:
    """Load ``html_path`` (a file, or an ``http://`` address) in headless Chromium; return its
    title, sections and images (each with whether it decoded and its natural size). With
    ``screenshot``, save a PNG of the whole page (up to ``max_height`` pixels tall). With
    ``script`` (asynchronous WebDriver JavaScript: it ends by calling ``arguments[0](value)``),
    run it on the page and return its value as ``script_result``."""
    found = find_browser()
    if found is None:
        raise HeadstartError("Chromium and chromedriver are needed to render the report: apt-get install chromium chromium-driver")
    browser, driver = found
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    profile = tempfile.mkdtemp(prefix="headstart-chromium-")
    proc = subprocess.Popen([driver, f"--port={port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    session = None
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if _call(base, "GET", "/status", timeout=2).get("ready"):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise HeadstartError(f"chromedriver ({driver}) did not start")
            time.sleep(0.2)
        caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": browser, "args": CHROMIUM_FLAGS + [f"--user-data-dir={profile}", f"--window-size={width},900"]}}}}
        session = _call(base, "POST", "/session", caps, timeout=90)["sessionId"]
        s = f"/session/{session}"
        url = str(html_path) if str(html_path).startswith(("http://", "https://")) else Path(html_path).resolve().as_uri()
        _call(base, "POST", f"{s}/url", {"url": url})
        info = _call(base, "POST", f"{s}/execute/sync", {"script": _CHECK, "args": []})
        if script is not None:
            info["script_result"] = _call(base, "POST", f"{s}/execute/async", {"script": script, "args": []})
        if screenshot is not None:
            # The DevTools call captures beyond the window (a window cannot be taller than the
            # virtual screen, which would cut long reports).
            h = min(int(info["height"]), max_height)
            shot = _call(base, "POST", f"{s}/goog/cdp/execute", {"cmd": "Page.captureScreenshot", "params": {
                "format": "png", "captureBeyondViewport": True, "clip": {"x": 0, "y": 0, "width": width, "height": h, "scale": 1}}})
            png = base64.b64decode(shot["data"])
            Path(screenshot).write_bytes(png)
            info["screenshot"] = str(screenshot)
        return info
    finally:
        if session is not None:
            try:
                _call(base, "DELETE", f"/session/{session}", timeout=10)
            except OSError:
                pass
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(profile, ignore_errors=True)

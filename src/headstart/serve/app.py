"""``headstart serve``: a prediction service over an exported model, on FastAPI + uvicorn.

- ``POST /predict`` — one or several images as ``multipart/form-data`` (any field names), or one
  image as the raw request body (``Content-Type: image/*`` or ``application/octet-stream``);
  ``?top_k=N``. Answers ``{"predictions": [{"name", "top": [{"class", "probability"}]}]}``.
- ``GET /health`` — ``{"status": "ok", ...}`` once the model is loaded.
- ``GET /model`` — the export's metadata (inputs, classes, resize rule, parity) and the model card.
- ``GET /`` — a small upload page.

Bad input is a 4xx JSON error ``{"error": ..., "detail": ...}`` that names the problem, and the
server keeps serving: an empty body (400), a content type that is not an image or a form (415),
a body or file over the size limit (413, checked on ``Content-Length`` and again while reading),
bytes that are not an image, a truncated file, or a decompression bomb over the pixel limit
(422, the decoder's reason).

Concurrent requests are batched: each decoded image joins a queue, and one task takes what has
gathered — up to ``max_batch`` images, waiting at most ``max_wait_ms`` for more once one is
there — and runs it through the engine in one call (on a worker thread, so the event loop keeps
accepting and decoding). Decoding runs in the thread pool too, so one large upload does not hold
up the others.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse

from ..errors import BadImageError, ConfigError

MAX_UPLOAD_BYTES = 10 * 1024 * 1024
"""The largest request body (and single file) accepted: 10 MiB, a phone photo with room to spare."""
MAX_BATCH = 32
MAX_WAIT_MS = 5.0
"""How long the batcher waits for more images once one is queued: a few ms costs a lone request
little and lets concurrent ones share an engine call."""
MAX_FILES = 64


@dataclass
class Model:
    """An exported model ready to serve: its runner, metadata and card."""

    path: Path
    info: dict[str, Any]
    card: str
    run: Any
    classes: list[str] = field(default_factory=list)
    size: int = 0

    @classmethod
    def load(cls, source: str | Path, *, engine: str = "onnxruntime", int8: bool = False) -> "Model":
        """``source``: a run folder (its ``model.onnx``, exported when missing or stale) or an
        ``.onnx`` file with its ``.json`` beside it."""
        from ..export.engines import openvino_runner
        from ..export.formats import onnx_runner

        src = Path(source)
        if src.is_dir():
            from ..api_export import exported_for

            path = exported_for(src, int8=int8)
            info_path = src / "model.onnx.json"
        elif src.suffix == ".onnx" and src.is_file():
            path, info_path = src, src.with_name(src.name + ".json")
            if not info_path.is_file():
                raise ConfigError(f"{src} has no {info_path.name} beside it: serve a file written by `headstart export` (it records the "
                                  "classes and the resize rule)")
        else:
            raise ConfigError(f"{src}: give a run folder or a model.onnx written by `headstart export`")
        info = json.loads(info_path.read_text())
        if info.get("kind") not in ("classifier", "ensemble"):
            raise ConfigError(f"{src} is a {info.get('kind')} model; the server answers classification requests")
        card_path = path.parent / "README.md"
        runner = onnx_runner(path) if engine == "onnxruntime" else openvino_runner(path)
        return cls(path=path, info=info, card=card_path.read_text(encoding="utf-8") if card_path.is_file() else "", run=runner,
                   classes=list(info["classes"]), size=int(info["input"]["size"]))


class Batcher:
    """Gathers images from concurrent requests into engine calls (see the module)."""

    def __init__(self, model: Model, *, max_batch: int = MAX_BATCH, max_wait_ms: float = MAX_WAIT_MS) -> None:
        self.model = model
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000
        self.queue: asyncio.Queue[tuple[np.ndarray, asyncio.Future]] = asyncio.Queue()
        self.calls = 0
        self.images = 0
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass

    async def predict(self, pixels: np.ndarray) -> np.ndarray:
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        await self.queue.put((pixels, fut))
        return await fut

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            items = [await self.queue.get()]
            deadline = loop.time() + self.max_wait
            while len(items) < self.max_batch:
                timeout = deadline - loop.time()
                if timeout <= 0:
                    break
                try:
                    items.append(await asyncio.wait_for(self.queue.get(), timeout))
                except asyncio.TimeoutError:
                    break
            x = np.stack([p for p, _ in items])
            try:
                probs = await loop.run_in_executor(None, lambda: self.model.run(x)[1])
            except Exception as exc:  # noqa: BLE001 - the engine failing must fail these requests, not the server
                for _, fut in items:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            self.calls += 1
            self.images += len(items)
            for (_, fut), p in zip(items, probs):
                if not fut.done():
                    fut.set_result(p)


class RequestError(Exception):
    def __init__(self, status: int, error: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.error, self.detail = status, error, detail


def to_pixels(raw: bytes, name: str, size: int) -> np.ndarray:
    """uint8 (3, S, S) by the export's resize rule; a 422 :class:`RequestError` when the bytes
    are not a usable image."""
    from ..data.decode import decode_bytes, to_square_uint8

    try:
        image = decode_bytes(raw, name=name)
    except BadImageError as exc:
        raise RequestError(422, "bad image", f"{name}: {exc.reason}") from None
    return to_square_uint8(image, size).transpose(2, 0, 1).copy()


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>headstart: {title}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:42rem;margin:2rem auto;padding:0 1rem}}
table{{border-collapse:collapse}}td,th{{padding:.2rem .6rem;border-bottom:1px solid #ddd;text-align:left}}</style></head>
<body><h1>{title}</h1><p>{n} classes: {classes}</p>
<form id="f"><input id="files" name="files" type="file" accept="image/*" multiple> <button type="submit">Predict</button></form>
<div id="out" aria-live="polite"></div>
<script>
const out = document.getElementById('out');
async function send(form) {{
  const r = await fetch('predict?top_k=3', {{method: 'POST', body: form}});
  const j = await r.json();
  if (!r.ok) {{ out.innerHTML = '<p class="error">' + j.error + ': ' + j.detail + '</p>'; return j; }}
  out.innerHTML = j.predictions.map(p => '<h3>' + p.name + '</h3><table>' +
    p.top.map(t => '<tr><td>' + t['class'] + '</td><td>' + t.probability.toFixed(3) + '</td></tr>').join('') + '</table>').join('');
  return j;
}}
document.getElementById('f').addEventListener('submit', e => {{ e.preventDefault(); send(new FormData(e.target)); }});
window.headstartSend = send;
</script></body></html>
"""


def create_app(source: str | Path, *, engine: str = "onnxruntime", int8: bool = False, max_bytes: int = MAX_UPLOAD_BYTES,
               max_batch: int = MAX_BATCH, max_wait_ms: float = MAX_WAIT_MS) -> Any:
    """The FastAPI application serving ``source`` (a run folder or an exported ``.onnx``)."""
    from contextlib import asynccontextmanager
    from html import escape

    model = Model.load(source, engine=engine, int8=int8)
    state: dict[str, Any] = {"started": time.time(), "requests": 0, "errors": 0}

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # type: ignore[no-untyped-def]
        batcher = Batcher(model, max_batch=max_batch, max_wait_ms=max_wait_ms)
        batcher.start()
        state["batcher"] = batcher
        yield
        await batcher.stop()

    app = FastAPI(title="headstart", lifespan=lifespan)

    def error(status: int, kind: str, detail: str) -> JSONResponse:
        state["errors"] += 1
        return JSONResponse({"error": kind, "detail": detail}, status_code=status)

    @app.exception_handler(RequestError)
    async def _request_error(request: Request, exc: RequestError) -> JSONResponse:
        return error(exc.status, exc.error, exc.detail)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = [f"{'.'.join(str(x) for x in e.get('loc', []))}: {e.get('msg')}" for e in exc.errors()]
        return error(400, "bad request", "; ".join(parts))

    @app.get("/health")
    async def health() -> dict[str, Any]:
        b = state.get("batcher")
        return {"status": "ok", "model": model.path.name, "kind": model.info.get("kind"), "classes": len(model.classes), "engine": engine,
                "int8": int8, "uptime_s": time.time() - state["started"], "requests": state["requests"], "errors": state["errors"],
                "engine_calls": b.calls if b else 0, "images": b.images if b else 0}

    @app.get("/model")
    async def model_info() -> dict[str, Any]:
        return {"metadata": model.info, "card": model.card}

    @app.get("/", response_class=HTMLResponse)
    async def page() -> str:
        return PAGE.format(title=escape(str(model.info.get("run", model.path.name))), n=len(model.classes),
                           classes=escape(", ".join(model.classes)))

    async def read_body(request: Request) -> bytes:
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > max_bytes:
            raise RequestError(413, "too large", f"the body is {int(length)} bytes; the limit is {max_bytes} (serve --max-upload-mb)")
        chunks, total = [], 0
        async for chunk in request.stream():
            total += len(chunk)
            if total > max_bytes:
                raise RequestError(413, "too large", f"the body exceeds the limit of {max_bytes} bytes (serve --max-upload-mb)")
            chunks.append(chunk)
        return b"".join(chunks)

    @app.post("/predict")
    async def predict(request: Request, top_k: int = 3) -> JSONResponse:
        state["requests"] += 1
        if not 1 <= top_k <= len(model.classes):
            raise RequestError(400, "bad top_k", f"top_k must be between 1 and {len(model.classes)}")
        ctype = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
        loop = asyncio.get_running_loop()
        uploads: list[tuple[str, bytes]] = []
        if ctype == "multipart/form-data":
            body = await read_body(request)
            if not body:
                raise RequestError(400, "empty body", "the request has no body; send images as multipart/form-data or raw bytes")
            from starlette.datastructures import UploadFile
            from starlette.formparsers import MultiPartException

            async def replay() -> dict[str, Any]:  # the body was read (with the size limit) already
                return {"type": "http.request", "body": body, "more_body": False}

            try:
                form = await Request(request.scope, replay).form(max_files=MAX_FILES, max_part_size=max_bytes)
            except MultiPartException as exc:
                raise RequestError(400, "bad form", f"the multipart body could not be read: {exc.message}") from None
            for key, value in form.multi_items():
                if isinstance(value, UploadFile):
                    uploads.append((value.filename or key, await value.read()))
            if not uploads:
                raise RequestError(400, "no files", "the form holds no files; attach images as file fields")
        elif ctype.startswith("image/") or ctype == "application/octet-stream":
            body = await read_body(request)
            if not body:
                raise RequestError(400, "empty body", "the request has no body; send the image's bytes")
            uploads.append((request.headers.get("x-filename", "upload"), body))
        else:
            raise RequestError(415, "unsupported content type", f"Content-Type {ctype or '(none)'}: send multipart/form-data or image/* bytes")
        pixels = []
        for name, raw in uploads:
            if len(raw) > max_bytes:
                raise RequestError(413, "too large", f"{name} is {len(raw)} bytes; the limit is {max_bytes} (serve --max-upload-mb)")
            pixels.append(await loop.run_in_executor(None, to_pixels, raw, name, model.size))
        batcher: Batcher = state["batcher"]
        probs = await asyncio.gather(*(batcher.predict(p) for p in pixels))
        rows = []
        for (name, _), pr in zip(uploads, probs):
            top = np.argsort(pr)[::-1][:top_k]
            rows.append({"name": name, "top": [{"class": model.classes[i], "probability": float(pr[i])} for i in top]})
        return JSONResponse({"predictions": rows})

    return app


def factory() -> Any:
    """For ``uvicorn --factory`` with several workers: the settings come from the environment
    ``headstart serve`` sets (each worker process builds its own app)."""
    import os

    return create_app(os.environ["HEADSTART_SERVE_SOURCE"], engine=os.environ.get("HEADSTART_SERVE_ENGINE", "onnxruntime"),
                      int8=os.environ.get("HEADSTART_SERVE_INT8") == "1",
                      max_bytes=int(os.environ.get("HEADSTART_SERVE_MAX_BYTES", MAX_UPLOAD_BYTES)))

"""``headstart serve``: start uvicorn with the app of ``serve/app.py`` (one process, or
``workers`` processes that each build it, the cores divided among them)."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import HeadstartError


def serve(source: str | Path, *, host: str = "127.0.0.1", port: int = 8000, workers: int = 1, engine: str = "onnxruntime",
          int8: bool = False, max_bytes: int = 10 * 1024 * 1024) -> None:
    """Serve ``source`` (a run folder or an exported ``.onnx``) until interrupted."""
    try:
        import fastapi  # noqa: F401
        import multipart  # noqa: F401
        import uvicorn
    except ImportError:
        raise HeadstartError("headstart serve needs FastAPI, uvicorn and python-multipart: pip install 'headstart[deploy]'") from None
    from ..export.formats import threads

    if engine not in ("onnxruntime", "openvino"):
        raise HeadstartError(f"--engine {engine!r}: the server runs onnxruntime or openvino")
    if workers < 1:
        raise HeadstartError(f"--workers {workers}: at least 1")
    if workers == 1:
        from .app import create_app

        uvicorn.run(create_app(source, engine=engine, int8=int8, max_bytes=max_bytes), host=host, port=port, log_level="warning")
        return
    if Path(source).is_dir():  # export once here, not in every worker at the same time
        from ..api_export import exported_for

        exported_for(source, int8=int8)
    os.environ.update({"HEADSTART_SERVE_SOURCE": str(source), "HEADSTART_SERVE_ENGINE": engine, "HEADSTART_SERVE_INT8": "1" if int8 else "0",
                       "HEADSTART_SERVE_MAX_BYTES": str(max_bytes), "HEADSTART_ENGINE_THREADS": str(max(1, threads() // workers))})
    uvicorn.run("headstart.serve.app:factory", factory=True, host=host, port=port, workers=workers, log_level="warning")

"""Inference engines for ``predict`` (and, later, the server): PyTorch eager, onnxruntime and
OpenVINO, each behind the same call — uint8 pixels (N, 3, S, S) in, probabilities (N, C) out —
and a reader that decodes files in a thread while the engine runs the previous batch.

Threads: the engine gets every core this process may use (``formats.threads``); decoding runs in
one extra thread, which spends its time in Pillow's C code with the GIL released, so the two
overlap instead of competing (a second decode thread on 2 cores measured no faster). onnxruntime
is told its thread count, OpenVINO its ``INFERENCE_NUM_THREADS``; neither spawns a pool of its own
beside it.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from ..errors import BadImageError, ConfigError
from .formats import threads

ENGINES = ("torch", "onnxruntime", "openvino")


def openvino_runner(path: Path, *, num_threads: int | None = None, precision: str = "f32") -> Callable[[np.ndarray], list[np.ndarray]]:
    """``path`` compiled for OpenVINO's CPU plugin. ``precision`` is the plugin's inference
    precision for the layers left in floating point: ``f32`` by default, because on CPUs with
    AMX or AVX512-BF16 the plugin would otherwise run them in bfloat16 (faster, but no longer the
    FP32 answers the export's parity check promised; ``bf16`` asks for that on purpose)."""
    try:
        import openvino as ov
    except ImportError:
        raise ConfigError("--engine openvino needs OpenVINO: pip install 'headstart[deploy]' (or pip install openvino)") from None
    core = ov.Core()
    compiled = core.compile_model(str(path), "CPU", {"INFERENCE_NUM_THREADS": num_threads or threads(), "PERFORMANCE_HINT": "LATENCY",
                                                     "INFERENCE_PRECISION_HINT": precision})
    request = compiled.create_infer_request()

    def run(x: np.ndarray) -> list[np.ndarray]:
        res = request.infer({0: x})
        return [np.asarray(res[o]) for o in compiled.outputs]

    return run


def openvino_has_bf16() -> bool:
    """Whether OpenVINO's CPU plugin can run bfloat16 on this machine (AMX or AVX512-BF16)."""
    try:
        import openvino as ov
    except ImportError:
        return False
    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def decoded_batches(paths: Sequence[Path], size: int, *, batch_size: int, square: Callable[[Any, int], np.ndarray]) -> Iterator[
        tuple[list[Path], np.ndarray, list[tuple[str, str]]]]:
    """Batches of (paths read, uint8 (n, 3, S, S), unreadable files with their reasons), decoded
    one batch ahead in a thread."""
    from ..data.decode import load_image

    def decode(chunk: Sequence[Path]) -> tuple[list[Path], np.ndarray, list[tuple[str, str]]]:
        ok, arrays, bad = [], [], []
        for p in chunk:
            try:
                arrays.append(square(load_image(p), size))
                ok.append(p)
            except BadImageError as exc:
                bad.append((str(p), exc.reason))
        x = np.stack(arrays).transpose(0, 3, 1, 2).copy() if arrays else np.zeros((0, 3, size, size), np.uint8)
        return ok, x, bad

    chunks = [paths[i : i + batch_size] for i in range(0, len(paths), batch_size)]
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="decode") as pool:
        pending = pool.submit(decode, chunks[0]) if chunks else None
        for k in range(len(chunks)):
            current = pending.result()  # type: ignore[union-attr]
            pending = pool.submit(decode, chunks[k + 1]) if k + 1 < len(chunks) else None
            yield current

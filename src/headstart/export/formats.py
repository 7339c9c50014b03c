"""Writing and running the exported files: ONNX (through PyTorch's own exporter,
``torch.onnx.export(dynamo=True)``, run by onnxruntime) and PyTorch's ``torch.export`` archive
(``.pt2``; TorchScript is deprecated). Both with the batch dimension dynamic.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from .graph import INPUT

FORMATS = ("onnx", "pt2")
OPSET = 18
MAX_BATCH = 4096


def _dynamic(module: nn.Module) -> dict:
    from torch.export import Dim

    name = next(iter(__import__("inspect").signature(module.forward).parameters))
    return {name: {0: Dim("batch", min=1, max=MAX_BATCH)}}


@contextlib.contextmanager
def _quiet():
    """The exporters print progress and warn about their own internals; headstart reports the
    outcome (and the parity check) itself."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


@contextlib.contextmanager
def _exact_sigmoid():
    """onnxruntime's Sigmoid is a fast approximation that returns 0 below about 1e-7 (and is off
    by ~1 % near it). A detector's RPN ranks its proposals by sigmoid(objectness) before NMS and
    keeps the first N, so in the exported graph the many tiny scores tie at 0, the survivors
    differ, and so do the boxes (measured on a Faster R-CNN run: 3 of 16 images). While the graph
    is traced, ``torch.sigmoid`` is written as 1 / (1 + exp(-x)), which onnxruntime computes to
    float precision."""
    original = torch.sigmoid

    def sigmoid(x: torch.Tensor) -> torch.Tensor:
        return 1.0 / (1.0 + torch.exp(-x))

    torch.sigmoid = sigmoid
    try:
        yield
    finally:
        torch.sigmoid = original


def export_onnx(module: nn.Module, sample: torch.Tensor, path: Path, output_names: list[str], *, fixed: bool = False) -> None:
    """``fixed``: one input of ``sample``'s shape, through the TorchScript-based exporter (for
    graphs whose output sizes depend on the data, e.g. detections, which ``torch.export`` rejects)."""
    with _quiet():
        if fixed:
            with _exact_sigmoid():
                torch.onnx.export(module, (sample,), str(path), input_names=[INPUT], output_names=output_names, dynamo=False,
                                  opset_version=17, dynamic_axes={n: {0: "detections"} for n in output_names})
            return
        torch.onnx.export(module, (sample,), str(path), input_names=[INPUT], output_names=output_names, dynamo=True,
                          dynamic_shapes=_dynamic(module), opset_version=OPSET, optimize=True, external_data=False)


def export_pt2(module: nn.Module, sample: torch.Tensor, path: Path) -> None:
    with _quiet():
        program = torch.export.export(module, (sample,), dynamic_shapes=_dynamic(module))
        torch.export.save(program, str(path))


def threads() -> int:
    """Threads for a runtime: the cores this process may use (never more, so two runtimes or a
    decoder pool beside one do not oversubscribe them), or ``$HEADSTART_ENGINE_THREADS`` (set by
    ``serve --workers N`` to the cores divided among the workers)."""
    env = os.environ.get("HEADSTART_ENGINE_THREADS")
    if env and env.isdigit() and int(env) > 0:
        return int(env)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def onnx_runner(path: Path, *, num_threads: int | None = None, spin: bool = True) -> Callable[[np.ndarray], list[np.ndarray]]:
    """``spin=False``: the runtime's threads sleep between calls (for callers that compute between
    them: spinning threads then take the cores from that work)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = num_threads or threads()
    opts.inter_op_num_threads = 1
    if not spin:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {INPUT: x})


def pt2_runner(path: Path) -> Callable[[np.ndarray], list[np.ndarray]]:
    program = torch.export.load(str(path)).module()

    def run(x: np.ndarray) -> list[np.ndarray]:
        with torch.inference_mode():
            return [t.numpy() for t in program(torch.from_numpy(x))]

    return run


def runner(path: Path, fmt: str) -> Callable[[np.ndarray], list[np.ndarray]]:
    return onnx_runner(path) if fmt == "onnx" else pt2_runner(path)

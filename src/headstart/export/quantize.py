"""INT8: static quantization of an exported ONNX graph with onnxruntime's own tools.

Static (activations' ranges measured beforehand on calibration images, not per request), per
channel for the weights (EfficientNet-Lite was designed for it: ReLU6 and no squeeze-excite),
QDQ format (quantize/dequantize pairs that onnxruntime and OpenVINO both read, so one file serves
both engines; NNCF's OpenVINO-only result measured no better: benchmarks/results/quantize-*.md).
The calibration images are the run's own training images, prepared by the same rule as every
input.

Two layers stay FP32 (``boundary_layers``): the first convolution of each network, fed straight
by the normalised pixels, and the last layer before the outputs. On x86 CPUs without VNNI, INT8
products are summed in pairs into 16-bit registers (u8 × s8), which can saturate; the first layer,
with full-range inputs, is where it bites, and the output layer's error reaches the scores
unfiltered. Measured on Lite0 (benchmarks/results/quantize-fm-xeon.md), the same file in OpenVINO
limited to AVX2: every layer INT8 loses ~6 points, the two kept FP32 ~0.3; with VNNI both are
within 0.3, and keeping the two costs ~5–15 % of the INT8 speed. When
the INT8 graph still disagrees with FP32 on held-out images (``MIN_AGREEMENT``), a second scheme
is tried — 7-bit weights (``reduce_range``, onnxruntime's advice for CPUs without VNNI) — and
the one that agrees more is kept; both are recorded.

The result is measured, never assumed: top-1 agreement with the FP32 graph on images that were
not used for calibration, and images per second for both on this machine (whose CPU and its
VNNI support are stored beside the file: INT8 speed and saturation depend on it). INT8 is never
the default: ``predict`` and the server use it only when it is asked for.
"""

from __future__ import annotations

import platform
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .graph import INPUT

CALIBRATION_BATCH = 8
MIN_AGREEMENT = 0.97
"""Held-out top-1 agreement with FP32 below which the 7-bit scheme is tried too: ~3 changed
answers in 100; measured 0.99–1.00 on Lite0 with VNNI, ~0.91 (−5 points of accuracy) on a CPU
where INT8 sums saturated."""

SCHEMES: dict[str, dict[str, Any]] = {
    "8-bit weights, first and last layers FP32": {"reduce_range": False},
    "7-bit weights (reduce_range), first and last layers FP32": {"reduce_range": True},
}
WEIGHTED = ("Conv", "Gemm", "MatMul", "ConvTranspose")


def boundary_layers(model: Any) -> list[str]:
    """Names of the weighted nodes (convolutions, matrix products) nearest the graph's input —
    reached from it without passing another weighted node — and nearest its outputs: the first
    layer of every network in the graph (each ensemble member has its own) and the last."""
    nodes = list(model.graph.node)
    consumers: dict[str, list[int]] = {}
    producer: dict[str, int] = {}
    for i, n in enumerate(nodes):
        for t in n.input:
            consumers.setdefault(t, []).append(i)
        for t in n.output:
            producer[t] = i

    def walk(start: list[str], nxt: Callable[[int], list[str]], edges: Callable[[str], list[int]]) -> set[int]:
        found, seen, todo = set(), set(), list(start)
        while todo:
            for i in edges(todo.pop()):
                if i in seen:
                    continue
                seen.add(i)
                if nodes[i].op_type in WEIGHTED:
                    found.add(i)
                else:
                    todo.extend(nxt(i))
        return found

    first = walk([g.name for g in model.graph.input], lambda i: list(nodes[i].output), lambda t: consumers.get(t, []))
    last = walk([o.name for o in model.graph.output], lambda i: list(nodes[i].input), lambda t: [producer[t]] if t in producer else [])
    return [nodes[i].name for i in sorted(first | last)]


def quantize_int8(fp32: Path, out: Path, calibration: np.ndarray, *, reduce_range: bool = False) -> list[str]:
    """Write the INT8 (QDQ, per-channel weights, MinMax-calibrated) version of ``fp32`` to ``out``;
    returns the layers kept FP32."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([calibration[i : i + CALIBRATION_BATCH] for i in range(0, len(calibration), CALIBRATION_BATCH)])

        def get_next(self):  # type: ignore[no-untyped-def]
            b = next(self.batches, None)
            return None if b is None else {INPUT: b}

    pre = out.with_name(out.name + ".pre.onnx")
    try:
        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
        keep = boundary_layers(onnx.load(str(pre), load_external_data=False))
        quantize_static(str(pre), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=keep,
                        reduce_range=reduce_range)
    finally:
        pre.unlink(missing_ok=True)
    return keep


def cpu_int8() -> dict[str, Any]:
    """This machine's CPU and whether it has VNNI (8-bit dot products summed in 32 bits: INT8 fast
    and free of 16-bit saturation); ``vnni`` is None where the flags cannot be read."""
    name, flags = platform.processor() or platform.machine(), None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                name = value.strip()
            elif key.strip() == "flags" and flags is None:
                flags = set(value.split())
    except OSError:
        pass
    return {"cpu": name, "vnni": None if flags is None else bool(flags & {"avx512_vnni", "avx_vnni", "amx_int8"})}


def images_per_second(run: Callable[[np.ndarray], list[np.ndarray]], x: np.ndarray, *, batch: int, repeats: int = 3) -> float:
    """Median images per second of ``run`` over ``repeats`` passes of ``x`` in batches of ``batch``
    (after one warm-up batch)."""
    run(x[:batch])
    rates = []
    for _ in range(repeats):
        t = time.perf_counter()
        for i in range(0, len(x), batch):
            run(x[i : i + batch])
        rates.append(len(x) / (time.perf_counter() - t))
    return float(np.median(rates))

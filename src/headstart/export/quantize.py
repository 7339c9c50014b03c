"""INT8: static quantization of an exported ONNX graph with onnxruntime's own tools.

Static (activations' ranges measured beforehand on calibration images, not per request), per
channel for the weights (EfficientNet-Lite was designed for it: ReLU6 and no squeeze-excite, so
per-channel INT8 keeps its accuracy), QDQ format (quantize/dequantize pairs that every
onnxruntime execution provider and OpenVINO read). The calibration images are the run's own
training images, prepared by the same rule as every input.

The result is measured, never assumed: top-1 agreement with the FP32 graph (and accuracy on
labelled images when the run's labels are at hand) and images per second for both on this
machine, stored beside the file. INT8 is never the default: ``predict`` and the server use it only
when it is asked for.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np

from .graph import INPUT

CALIBRATION_BATCH = 8


def quantize_int8(fp32: Path, out: Path, calibration: np.ndarray) -> None:
    """Write the INT8 (QDQ, per-channel weights, MinMax-calibrated) version of ``fp32`` to ``out``."""
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
        quantize_static(str(pre), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax)
    finally:
        pre.unlink(missing_ok=True)


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

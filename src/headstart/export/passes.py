"""A classifier run's class probabilities for many stored images at once — the teacher's pass
over the unlabeled pool — with the network in onnxruntime and the rest in headstart's own code.

The pool is kept at its native size (28 px for Fashion-MNIST); each batch is resized and
normalised by the run's own ``Prepare`` (as every eager pass does), and only the network runs in
the graph: a float-input copy of the run's model, exported once into the teacher's
``teacher-tables/`` folder under its weights' digest. The probabilities then differ from the
eager pass's by the runtime's float rounding only — checked on the first batch of every pass
against PyTorch (``MAX_DIFF``); a graph that fails the check, will not export, or a run that is
not a single classifier on the CPU takes the eager pass instead, saying why.

Why: with 5 of 9 stages frozen at 112 px, 20,000 pool images on 2 Xeon cores: eager 416 img/s,
this pass 785 (1.89×; ``benchmarks/results/semi-pass-engine.md``), and the route's four teachers
label 59,900 images each. onnxruntime's threads are told not to spin between calls: the resize
runs between them, and spinning threads cost ~20 % of the speed (642 against 801 img/s in a
one-off probe on 10,000 images).

``HEADSTART_TEACHER_ENGINE=torch`` keeps every pass eager.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from ..console import console

MAX_DIFF = 1e-4
"""Largest |Δ probability| allowed between the graph and PyTorch on the first batch (measured:
5e-6 for Lite0)."""

CHECK_IMAGES = 32
BATCH = 64
"""onnxruntime's batch here: 801 img/s at 64, 622 at 256 (the resize's larger tensors)."""
EAGER_BATCH = 256
ENV = "HEADSTART_TEACHER_ENGINE"


FEATURE_DIFF = 1e-3
"""Largest |Δ feature| allowed, relative to the largest feature, on the same first batch."""


class _Network(nn.Module):
    """Normalised float (N, 3, S, S) → logits and the pooled features the head reads (one pass
    gives a teacher's table and the features ``-O table=graph`` spreads labels over)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.model.forward_features(x)
        return self.model.forward_head(features).float(), features.float()


def _weights_digest(run: Path) -> str:
    from ..data.fingerprint import file_digest

    return file_digest(run / "model.safetensors")[:16]


def graph_for(predictor: Any, folder: Path) -> Path:
    """The float-input graph of ``predictor``'s classifier in ``folder`` (exported when missing)."""
    from .formats import export_onnx

    path = folder / f"network-{_weights_digest(predictor.run.path)}.onnx"
    if path.is_file():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    module = _Network(predictor.model).eval()
    sample = predictor.prepare(torch.zeros(2, 3, 8, 8, dtype=torch.uint8)).contiguous()
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.partial")
    try:
        with torch.inference_mode(False), torch.no_grad():
            export_onnx(module, sample, tmp, ["logits", "features"])
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def eager_pass(predictor: Any, images: torch.Tensor, batch_size: int = EAGER_BATCH) -> tuple[np.ndarray, np.ndarray]:
    """PyTorch's probabilities and pooled features for uint8 ``images``, batch by batch."""
    from ..engine.loop import autocast_for

    model = predictor.model
    model.eval()
    probs, feats = [], []
    with torch.inference_mode(), autocast_for(predictor.device):
        for i in range(0, len(images), batch_size):
            f = model.forward_features(predictor.prepare(images[i : i + batch_size]))
            probs.append(model.forward_head(f).float().softmax(1).cpu())
            feats.append(f.float().cpu())
    if not probs:
        return np.zeros((0, len(predictor.classes)), np.float32), np.zeros((0, 0), np.float32)
    return torch.cat(probs).numpy(), torch.cat(feats).numpy()


def fast_pass(predictor: Any, folder: Path) -> Callable[..., tuple[np.ndarray, np.ndarray | None]] | None:
    """A function (uint8 images, batch size, features=False) → (probabilities, pooled features or
    ``None``) through onnxruntime, or ``None`` when this run or machine takes the eager pass (a
    message says why when it is a failure)."""
    if os.environ.get(ENV, "").strip().lower() == "torch":
        return None
    if predictor.is_ensemble or predictor.device.type != "cpu":
        return None
    try:
        from .formats import onnx_runner

        graph = onnx_runner(graph_for(predictor, folder), spin=False)
    except Exception as e:  # an architecture the exporter cannot take, or an unreadable file: the eager pass does the job
        console.print(f"  [dim]teacher {predictor.run.path}: its network did not export or load for onnxruntime "
                      f"({type(e).__name__}: {str(e)[:200]}); labelling with PyTorch[/dim]")
        return None

    def both(x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        logits, features = graph(predictor.prepare(x).contiguous().numpy())[:2]
        return torch.from_numpy(logits).softmax(1).numpy(), features

    def run(images: torch.Tensor, batch_size: int, features: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        check = images[:CHECK_IMAGES]
        eager = predictor.proba_tensor(check, batch_size=CHECK_IMAGES)
        try:
            first = both(check)
            diff = float(np.abs(first[0] - eager).max()) if len(first[0]) else 0.0
            why = f"differs from PyTorch by {diff:.2g} on its first {len(first[0])} images (allowed {MAX_DIFF:g})"
            if features and len(check):
                want = eager_pass(predictor, check, CHECK_IMAGES)[1]
                fdiff = float(np.abs(first[1] - want).max()) / max(1e-6, float(np.abs(want).max()))
                if not fdiff <= FEATURE_DIFF:
                    diff, why = float("inf"), f"features differ from PyTorch's by {fdiff:.2g} of their largest (allowed {FEATURE_DIFF:g})"
        except Exception as e:  # a graph that does not fit this run (a damaged or foreign file)
            diff, why = float("inf"), f"could not run its graph ({type(e).__name__}: {str(e)[:160]})"
        if not diff <= MAX_DIFF:
            console.print(f"  [yellow]teacher {predictor.run.path}: onnxruntime {why}; labelling with PyTorch (set {ENV}=torch "
                          "to skip the try)[/yellow]")
            if features:
                return eager_pass(predictor, images)
            return predictor.proba_tensor(images, batch_size=EAGER_BATCH), None
        probs, feats = [eager], [first[1]]
        for i in range(CHECK_IMAGES, len(images), batch_size):
            p, f = both(images[i : i + batch_size])
            probs.append(p)
            feats.append(f)
        return np.concatenate(probs), (np.concatenate(feats) if features else None)

    return run


def proba_features(predictor: Any, images: torch.Tensor, folder: Path, *, batch_size: int = EAGER_BATCH) -> tuple[np.ndarray, np.ndarray, str]:
    """``predictor``'s probabilities and pooled features for uint8 ``images`` in one pass, by the
    fastest pass that agrees with PyTorch, and which one it was (``onnxruntime`` or ``torch``)."""
    run = fast_pass(predictor, folder)
    if run is None:
        probs, feats = eager_pass(predictor, images, batch_size)
        return probs, feats, "torch"
    probs, feats = run(images, BATCH, features=True)
    return probs, feats, "onnxruntime"


def proba(predictor: Any, images: torch.Tensor, folder: Path, *, batch_size: int = EAGER_BATCH) -> tuple[np.ndarray, str]:
    """``predictor``'s probabilities for uint8 ``images``, by the fastest pass that agrees with
    PyTorch (``batch_size`` is the eager pass's), and which one it was (``onnxruntime`` or
    ``torch``)."""
    run = fast_pass(predictor, folder)
    if run is None:
        return predictor.proba_tensor(images, batch_size=batch_size), "torch"
    return run(images, BATCH)[0], "onnxruntime"


def measure(predictor: Any, images: torch.Tensor, folder: Path) -> dict[str, Any]:
    """What the pass ``proba`` would take costs here (each speed the median of three passes over
    ``images``): ``pass_ips`` (its images per second), ``eager_ips`` (PyTorch's own forward speed,
    the unit a training step is costed in — training never runs in the graph), ``export_s`` (the
    seconds its graph's export took: 0 when already there, or eager) and ``engine``."""
    t0 = time.perf_counter()
    run = fast_pass(predictor, folder)
    export_s = time.perf_counter() - t0 if run is not None else 0.0

    def speed(once: Callable[[], Any]) -> float:
        once()  # warm-up
        times = []
        for _ in range(3):  # one pass is at the mercy of a busy machine
            t = time.perf_counter()
            once()
            times.append(time.perf_counter() - t)
        return len(images) / max(1e-6, sorted(times)[1])

    eager = speed(lambda: predictor.proba_tensor(images, batch_size=EAGER_BATCH))
    fast = eager if run is None else speed(lambda: run(images, BATCH))
    return {"pass_ips": fast, "eager_ips": eager, "export_s": export_s, "engine": "torch" if run is None else "onnxruntime"}

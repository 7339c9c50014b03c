"""Class activation maps through the grad-cam library, with its hooks always released.

``compute_cams`` runs one of the library's CAM methods over uint8 images in batches. The target
layer is the backbone adapter's ``cam_layer`` (the last stage with a spatial map: later stages
have no location left to explain); its name goes into every output. Each batch gets a fresh CAM
object whose forward hooks are removed in a ``finally`` block — the library's own ``__exit__``
swallows ``IndexError``, and an object kept across batches keeps the last batch's activations,
gradients and autograd graph alive. Memory therefore stays flat however many images are
explained (``tests/explain/test_cam.py`` runs 1,000).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from pytorch_grad_cam import EigenCAM, GradCAM, GradCAMPlusPlus, ScoreCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from ..backbones import Backbone
from ..errors import HeadstartError
from ..registry import Registry


@dataclass(frozen=True)
class CamMethod:
    """One CAM method: the grad-cam class, whether it needs gradients, and its batch size.

    Score-CAM masks the input with every channel of the target layer and runs the network once
    per mask (1,280 forwards per image for EfficientNet-Lite0), and builds all masked copies of a
    batch at once (images × channels × 3 × H × W floats): one image per batch keeps that near
    200 MB at 112 px.
    """

    name: str
    cls: type
    uses_gradients: bool
    batch_size: int
    description: str


CAM_METHODS: Registry[CamMethod] = Registry("CAM method")


def _add(method: CamMethod) -> None:
    CAM_METHODS.register(method.name)(method)


_add(CamMethod("gradcam", GradCAM, True, 32, "Grad-CAM: channels weighted by their mean gradient (Selvaraju et al., 2017)"))
_add(CamMethod("gradcam++", GradCAMPlusPlus, True, 32, "Grad-CAM++: second-order weights, sharper with several instances (Chattopadhay et al., 2018)"))
_add(CamMethod("scorecam", ScoreCAM, False, 1, "Score-CAM: channels weighted by the score of the input masked by each (no gradients; slow)"))
_add(CamMethod("eigencam", EigenCAM, False, 32, "Eigen-CAM: first principal component of the activations (class-agnostic, no gradients)"))


@dataclass
class CamResult:
    """CAMs for a set of images.

    Attributes:
        cams: (N, S, S) float32 in [0, 1], S = the model's input side; each map is scaled to its
            own maximum by the library (so shares and thresholds compare across images).
        probs: (N, num_classes) softmax of the model's output on the same input.
        targets: the class each map explains (the predicted one unless a class was given).
        layer: the adapter's name for the target layer, e.g. ``conv_head``.
        method: the CAM method's name.
    """

    cams: np.ndarray
    probs: np.ndarray
    targets: np.ndarray
    layer: str
    method: str

    @property
    def predicted(self) -> np.ndarray:
        return self.probs.argmax(1)


def cam_layer_name(model: Backbone) -> str:
    return model.stage_names[model.cam_index]


@contextmanager
def _gradients_on(model: nn.Module) -> Iterator[None]:
    """Every parameter requires grad while CAMs are computed (frozen stages of a linear-probe run
    would otherwise leave the target layer's output without a gradient), then as before."""
    flags = [p.requires_grad for p in model.parameters()]
    try:
        for p in model.parameters():
            p.requires_grad_(True)
        yield
    finally:
        for p, f in zip(model.parameters(), flags):
            p.requires_grad_(f)


class _NoBar:
    """Stands in for the ``tqdm`` module inside Score-CAM: the iterable, without a bar."""

    @staticmethod
    def tqdm(iterable, *args, **kwargs):  # noqa: ANN001, ANN205
        return iterable


@contextmanager
def _quiet_progress() -> Iterator[None]:
    """Score-CAM draws a tqdm bar per image (the library reads ``tqdm.tqdm`` at call time, and
    tqdm reads its environment switches only at import); hundreds of bars would flood the
    console, so the library's reference is swapped for the bare iterable while CAMs run."""
    from pytorch_grad_cam import score_cam

    old = score_cam.tqdm
    score_cam.tqdm = _NoBar
    try:
        yield
    finally:
        score_cam.tqdm = old


def _cam_batch(method: CamMethod, model: Backbone, x: torch.Tensor, targets: Sequence[int] | None) -> tuple[np.ndarray, np.ndarray]:
    """One batch; ``targets=None`` lets the library explain each image's top class."""
    cam = method.cls(model=model, target_layers=[model.cam_layer])
    try:
        maps = cam(input_tensor=x, targets=None if targets is None else [ClassifierOutputTarget(int(t)) for t in targets])
        probs = cam.outputs.detach().float().softmax(1).cpu().numpy()
    finally:
        cam.activations_and_grads.release()
        cam.outputs = None
        model.zero_grad(set_to_none=True)
    return np.asarray(maps, dtype=np.float32), probs


def compute_cams(
    model: Backbone,
    prepare: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    *,
    method: str = "gradcam",
    target_class: int | None = None,
    batch_size: int | None = None,
) -> CamResult:
    """CAMs for uint8 (N, 3, H, W) images.

    Args:
        model: a loaded run's model (put in eval mode here).
        prepare: uint8 batch → the float input the model expects (resize, normalise, device).
        images: the images, stored size; ``prepare`` resizes them.
        method: a name in ``CAM_METHODS``.
        target_class: explain this class for every image; ``None`` explains each prediction.
        batch_size: images per CAM call (default: the method's own).
    """
    spec = CAM_METHODS.get(method)
    num_classes = getattr(model.head, "out_features", None) or getattr(model.head, "num_classes", None)
    if target_class is not None and num_classes is not None and not 0 <= target_class < num_classes:
        raise HeadstartError(f"class index {target_class} is out of range: the model has {num_classes} classes")
    model.eval()
    bs = batch_size or spec.batch_size
    cams, probs, targets = [], [], []
    with _gradients_on(model), _quiet_progress():
        for start in range(0, len(images), bs):
            x = prepare(images[start : start + bs])
            tgt = None if target_class is None else [target_class] * len(x)
            m, p = _cam_batch(spec, model, x, tgt)
            cams.append(m)
            probs.append(p)
            targets.extend(p.argmax(1).tolist() if tgt is None else tgt)
    side = int(prepare(images[:1]).shape[-1]) if len(images) else 0
    return CamResult(
        cams=np.concatenate(cams) if cams else np.zeros((0, side, side), np.float32),
        probs=np.concatenate(probs) if probs else np.zeros((0, 0), np.float32),
        targets=np.asarray(targets, dtype=np.int64),
        layer=cam_layer_name(model),
        method=method,
    )

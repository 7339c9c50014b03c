"""What an exported model computes: uint8 RGB pixels at the run's square size in, scores out.

Preprocessing is split where it is cheapest to get right. **Inside the graph**: the cast to
float and the normalisation (mean, std of the weights), so a caller can never feed unnormalised
or wrongly scaled pixels, and an ensemble resizes for each member as it does in headstart.
**Beside the graph** (the ``.json`` written next to the model, read by ``predict`` and the
server): the decode and the resize to the square — the shorter side to ``size``, centre crop,
Pillow's antialiased bilinear filter, EXIF orientation applied — because decoding files of any
size is host work that no graph runtime does, and a fixed input square keeps the batch dimension
the only dynamic one.

One wrapper per run kind: classifiers (every strategy and head; distilled students are
classifiers) give ``logits`` and ``probabilities``; ensembles give ``log_probabilities`` (their
combined probabilities' log, the rule and any temperature inside) and ``probabilities``;
segmenters give per-pixel ``logits`` and ``probabilities`` at the input square; detectors take one
image per call (torchvision's detectors work on lists of images) and give ``boxes``, ``scores``
and ``labels``, through PyTorch's TorchScript-based ONNX exporter (``torch.export`` cannot trace
their data-dependent box counts).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import ConfigError
from ..runfolder import LoadedRun

INPUT = "pixels"
RESIZE_RULE = ("shorter side resized to size, centre-cropped to size x size (Pillow bilinear, antialiased when shrinking), "
               "RGB, EXIF orientation applied")
BOX_RULE = ("resized to size x size, each side on its own (bilinear, antialiased when shrinking), RGB, EXIF orientation applied; one "
            "image per call; the boxes come in the square's pixels: scale x by width/size and y by height/size")
STRETCH_RULE = ("resized to size x size, each side on its own (bilinear, antialiased when shrinking), RGB, EXIF orientation applied; "
                "the per-pixel logits resized back to the image's own size (bilinear) before the argmax")
"""headstart's own segment/detect predict resize the normalised float image (torch's bilinear
interpolation); a client resizing the uint8 image first differs from it by rounding only."""


class _Normalise(nn.Module):
    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1) * 255)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1) * 255)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() - self.mean) / self.std


class PixelsToScores(nn.Module):
    """uint8 (N, 3, S, S) → (scores, probabilities) with the softmax over dim 1."""

    def __init__(self, model: nn.Module, normalise: nn.Module | None, *, log_space: bool = False) -> None:
        super().__init__()
        self.model = model
        self.normalise = normalise if normalise is not None else nn.Identity()
        self.log_space = log_space

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.model(self.normalise(x)).float()
        return z, (z.exp() if self.log_space else z.softmax(1))


class PixelsToBoxes(nn.Module):
    """One uint8 image (1, 3, S, S) → its detections: ``boxes`` (k, 4) in the square's pixels,
    ``scores`` (k,), ``labels`` (k,) 0-based (torchvision's detectors take a list of images, so
    the exported graph takes one image per call)."""

    def __init__(self, detector: nn.Module, normalise: nn.Module) -> None:
        super().__init__()
        self.detector = detector
        self.normalise = normalise

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = self.detector(self.normalise(x))[0]
        return out["boxes"], out["scores"], out["labels"]


def exportable(loaded: LoadedRun) -> tuple[nn.Module, dict[str, Any]]:
    """The run's model as an exportable module, and the spec written beside the graph."""
    kind = loaded.kind
    size = int(loaded.meta["image_size"])
    pre = loaded.meta.get("preprocess") or {}
    if kind == "classifier":
        module: nn.Module = PixelsToScores(loaded.model, _Normalise(tuple(pre["mean"]), tuple(pre["std"])))
        outputs = ["logits", "probabilities"]
    elif kind == "ensemble":
        module = PixelsToScores(loaded.model, None, log_space=True)  # the ensemble prepares each member's input itself
        outputs = ["log_probabilities", "probabilities"]
    elif kind == "segmenter":
        module = PixelsToScores(loaded.model, _Normalise(tuple(pre["mean"]), tuple(pre["std"])))
        outputs = ["logits", "probabilities"]
    elif kind == "detector":
        module = PixelsToBoxes(loaded.model, _Normalise(tuple(pre["mean"]), tuple(pre["std"])))
        outputs = ["boxes", "scores", "labels"]
    else:
        raise ConfigError(f"{loaded.path} is a run of kind {kind!r}; `headstart export` takes classifier, ensemble (distilled students are "
                          "classifiers), segmenter and detector runs")
    module.eval()
    spec = {"kind": kind, "classes": list(loaded.meta["classes"]), "input": {"name": INPUT, "dtype": "uint8", "layout": "NCHW",
            "channels": "RGB", "size": size, "resize": {"segmenter": STRETCH_RULE, "detector": BOX_RULE}.get(kind, RESIZE_RULE),
            "dynamic": [] if kind == "detector" else ["batch"]},
            "outputs": outputs, "normalisation": "inside the graph" if kind != "ensemble" else "inside the graph (per member)",
            "preprocess": pre}
    return module, spec

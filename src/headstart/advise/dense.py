"""Freeze depth for dense tasks (segmentation, detection), measured: ``--freeze-stages auto``.

The classifier's advisor probes each stage's pooled features against the image labels; a dense
task's labels are per pixel, so the probe is too. From each of up to :data:`MAX_IMAGES` training
images, :data:`PIXELS_PER_IMAGE` pixels are drawn — half on objects (any class but 0), half on
the background, where the image has both — and each stage's feature map is read at those
pixels (the cell that covers each one). A linear probe (``measure.probe_accuracy``: standardised
features, logistic regression, cross-validated) says per stage how well the pixel's class can
be read off its features; ``rules.freeze_from_probe`` turns that curve into the depth to freeze
exactly as it does for a classifier: the stages before the first one within 5 % of the best
stay frozen, the rest retrain.

For detection the pixel's class is the class of the smallest box that covers it (0 outside
every box): the question asked of the features is the same — where does "what is here" become
readable — and one measurement serves both tasks.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from ..backbones.base import Backbone
from ..errors import ConfigError
from ..finetune.rules import default_freeze_stages
from .measure import probe_accuracy
from .rules import Choice, freeze_from_probe

MAX_IMAGES = 150
PIXELS_PER_IMAGE = 16
IGNORE = 255


def boxes_label_map(boxes: torch.Tensor, labels: torch.Tensor, size: int) -> np.ndarray:
    """(size, size) uint8: class + 1 inside each box (the smallest box on top), 0 elsewhere."""
    m = np.zeros((size, size), dtype=np.uint8)
    if len(boxes):
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        for j in torch.argsort(area, descending=True).tolist():
            x0, y0, x1, y1 = (int(round(float(v))) for v in boxes[j])
            m[max(0, y0) : max(0, y1), max(0, x0) : max(0, x1)] = int(labels[j]) + 1
    return m


def sample_pixels(label_map: np.ndarray, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(ys, xs) of ``n`` pixels: half on objects (label > 0), half on background (0), as far as
    the map has them; ignored pixels never."""
    valid = label_map != IGNORE
    obj = np.flatnonzero((label_map > 0).ravel() & valid.ravel())
    bg = np.flatnonzero((label_map == 0).ravel())
    k_obj = min(len(obj), n // 2 if len(bg) else n)
    k_bg = min(len(bg), n - k_obj)
    picks = np.concatenate([rng.choice(obj, k_obj, replace=False) if k_obj else np.zeros(0, np.int64),
                            rng.choice(bg, k_bg, replace=False) if k_bg else np.zeros(0, np.int64)])
    w = label_map.shape[1]
    return picks // w, picks % w


@torch.no_grad()
def pixel_probe(body: Backbone, images: torch.Tensor, label_maps: np.ndarray, prepare: Callable[[torch.Tensor], torch.Tensor], *,
                seed: int = 0, batch_size: int = 32) -> tuple[list[float | None], int]:
    """Probe accuracy of each stage at sampled pixels (``None`` for a stage without a spatial
    map, or when a class has too few pixels to test), and how many pixels were probed."""
    rng = np.random.default_rng(seed)
    n = len(images)
    chosen = np.sort(rng.choice(n, min(n, MAX_IMAGES), replace=False))
    points = [sample_pixels(label_maps[i], PIXELS_PER_IMAGE, rng) for i in chosen]
    labels = np.concatenate([label_maps[i][ys, xs] for i, (ys, xs) in zip(chosen, points)]).astype(np.int64)
    side = label_maps.shape[-1]
    feats: list[list[np.ndarray] | None] = [[] for _ in range(body.num_stages)]
    was = body.training
    body.eval()
    try:
        for lo in range(0, len(chosen), batch_size):
            idx = chosen[lo : lo + batch_size]
            x = prepare(images[torch.as_tensor(idx)])
            for s, stage in enumerate(body.stages):
                x = stage(x)
                if x.dim() != 4 or feats[s] is None:
                    feats[s] = None
                    continue
                h, w = x.shape[-2:]
                fm = x.float().cpu()
                for k, i in enumerate(idx):
                    ys, xs = points[lo + k]
                    feats[s].append(fm[k][:, (ys * h) // side, (xs * w) // side].T.numpy())  # type: ignore[union-attr]
    finally:
        body.train(was)
    present, counts = np.unique(labels, return_counts=True)
    keep = np.isin(labels, present[counts >= 2])
    remap = {int(c): i for i, c in enumerate(present[counts >= 2])}
    y = np.array([remap[int(v)] for v in labels[keep]], dtype=np.int64)
    out: list[float | None] = []
    for f in feats:
        out.append(None if f is None else probe_accuracy(np.concatenate(f)[keep], y, seed=seed, max_folds=3))
    return out, int(keep.sum())


def freeze_depth(body: Backbone, images: torch.Tensor, label_maps: np.ndarray, prepare: Callable[[torch.Tensor], torch.Tensor], *,
                 source: str, seed: int = 0) -> tuple[Choice, list[float | None]]:
    """``--freeze-stages auto``: the depth to freeze from the pixel probe (see the module);
    ``source`` says where the pixels' classes came from (``masks`` or ``boxes``)."""
    if not body.pretrained:
        return Choice(0, "no pretrained weights: nothing to keep, every stage trains"), []
    probe, pixels = pixel_probe(body, images, label_maps, prepare, seed=seed)
    choice = freeze_from_probe(probe, body.num_stages)
    curve = ", ".join("-" if p is None else f"{p:.2f}" for p in probe)
    return Choice(choice.value, f"--freeze-stages auto: a linear probe of each stage at {pixels} pixels (classes from the {source}) "
                                f"reads [{curve}]; {choice.reason}"), probe


def resolve_freeze(requested: int | str | None, body: Backbone, *, images: torch.Tensor, label_maps: Callable[[], np.ndarray],
                   prepare: Callable[[torch.Tensor], torch.Tensor], source: str, part: str, seed: int = 0) -> tuple[int, str | None, list[float | None] | None]:
    """``--freeze-stages`` of a dense task resolved: a number (as given), ``auto`` (the pixel
    probe; ``label_maps`` is only built then), or ``None`` (the first half of a pretrained body,
    nothing of a random one). Returns (stages, the reason when headstart chose, the probe curve).
    ``part`` names the body in messages (``encoder`` / ``body``)."""
    probe = None
    reason = None
    if requested == "auto":
        choice, probe = freeze_depth(body, images, label_maps(), prepare, source=source, seed=seed)
        stages, reason = int(choice.value), choice.reason  # type: ignore[call-overload]
    elif requested is None:
        stages = default_freeze_stages(num_stages=body.num_stages) if body.pretrained else 0
        reason = (f"the first {stages} of {body.num_stages} {part} stages stay as ImageNet trained them (edges and textures transfer "
                  "anywhere; --freeze-stages to choose)" if stages else "no ImageNet weights installed: every stage trains")
    else:
        try:
            stages = int(requested)
        except ValueError:
            raise ConfigError(f"--freeze-stages {requested!r}: a number of {part} stages (0..{body.num_stages}) or auto") from None
    if not 0 <= stages <= body.num_stages:
        raise ConfigError(f"--freeze-stages {stages}: {body.name} has {body.num_stages} stages; freeze 0..{body.num_stages}")
    return stages, reason, probe

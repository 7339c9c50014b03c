"""Feature pictures: first-layer filters, projections of the penultimate features, and the
dataset patches that most excite one channel of a chosen layer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE
from torch import nn

from ..backbones import Backbone
from ..errors import HeadstartError


def first_conv(model: Backbone) -> tuple[str, nn.Conv2d]:
    """The first convolution the image meets, and its qualified name."""
    for name, m in model.stages.named_modules():
        if isinstance(m, nn.Conv2d):
            return f"stages.{name}", m
    raise HeadstartError(f"{model.name} has no convolution to show")


def filter_tiles(weight: torch.Tensor) -> np.ndarray:
    """(out, in, k, k) weights → (out, k, k, 3) uint8 tiles, each scaled to its own range.

    Three input channels are shown as RGB (the filters of an ImageNet network show colour
    opponents and oriented edges); other widths as the grey mean over input channels. Each tile
    is scaled by its own largest absolute weight around mid-grey, so a filter's sign pattern is
    visible even when its norm is small.
    """
    w = weight.detach().float().cpu()
    if w.shape[1] != 3:
        w = w.mean(1, keepdim=True).expand(-1, 3, -1, -1)
    scale = w.abs().amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12)
    tiles = (w / scale * 127.5 + 127.5).clamp(0, 255).round().to(torch.uint8)
    return tiles.permute(0, 2, 3, 1).numpy()


@torch.no_grad()
def penultimate(model: Backbone, prepare: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, *, batch_size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """Pooled penultimate features and class probabilities of uint8 images, in one pass."""
    model.eval()
    feats, probs = [], []
    for s in range(0, len(images), batch_size):
        f = model.forward_features(prepare(images[s : s + batch_size]))
        feats.append(f.float().cpu())
        probs.append(model.forward_head(f).float().softmax(1).cpu())
    return torch.cat(feats).numpy(), torch.cat(probs).numpy()


def project(features: np.ndarray, *, seed: int = 0) -> dict[str, np.ndarray]:
    """2-D PCA and t-SNE of the features (t-SNE perplexity min(30, (N − 1) / 3), PCA init)."""
    n = len(features)
    if n < 3:
        raise HeadstartError(f"projections need at least 3 images, got {n}")
    pca = PCA(n_components=2, random_state=seed).fit(features)
    out = {"pca": pca.transform(features), "pca_variance": pca.explained_variance_ratio_}
    perplexity = float(min(30.0, (n - 1) / 3))
    out["tsne"] = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(features)
    return out


def stage_index(model: Backbone, layer: str | int) -> int:
    """A stage named (``blocks.3``) or numbered (negative numbers count from the end)."""
    if isinstance(layer, int) or str(layer).lstrip("-").isdigit():
        i = int(layer)
        if not -model.num_stages <= i < model.num_stages:
            raise HeadstartError(f"{model.name} has stages 0..{model.num_stages - 1}, not {i}")
        return i % model.num_stages
    if layer not in model.stage_names:
        raise HeadstartError(f"{model.name} has no stage {layer!r}; its stages are: {', '.join(model.stage_names)}")
    return model.stage_names.index(layer)


def receptive_field(model: Backbone, stage: int, side: int, device: torch.device) -> tuple[int, int]:
    """Side of the input region that one unit at the centre of ``stage``'s map depends on, and
    the map's stride, measured by back-propagating that unit to a faint random input (the
    region where the gradient is non-zero; noise keeps ReLUs from blanking whole paths)."""
    gen = torch.Generator().manual_seed(0)
    x = (torch.randn(1, 3, side, side, generator=gen) * 0.1).to(device).requires_grad_(True)
    with torch.enable_grad():
        flags = [p.requires_grad for p in model.parameters()]
        model.requires_grad_(False)
        try:
            y = model.forward_stages(x, 0, stage + 1)
            if y.dim() != 4:
                raise HeadstartError(f"stage {model.stage_names[stage]} has no spatial map; choose an earlier stage")
            h, w = y.shape[-2:]
            y[0, :, h // 2, w // 2].sum().backward()
        finally:
            for p, f in zip(model.parameters(), flags):
                p.requires_grad_(f)
    g = x.grad[0].abs().sum(0)
    ys, xs = torch.nonzero(g > 0, as_tuple=True)
    stride = max(1, round(side / w))
    if len(ys) == 0:
        return stride, stride
    return int(max(ys.max() - ys.min() + 1, xs.max() - xs.min() + 1)), stride


def patch_stage(model: Backbone, side: int, device: torch.device) -> int:
    """The deepest stage whose units see at most two thirds of the image side: deep enough for
    parts and textures, shallow enough that a patch is a part, not the whole picture
    (EfficientNet-Lite0 at 112 px: ``blocks.2``, 67-px field, stride 8)."""
    best = 0
    for i in range(model.num_stages):
        try:
            rf, _ = receptive_field(model, i, side, device)
        except HeadstartError:
            break
        if rf > side * 2 / 3:
            break
        best = i
    return best


@dataclass
class Patches:
    layer: str
    channel: int
    patch: int
    stride: int
    indices: np.ndarray  # image index of each patch, strongest first
    values: np.ndarray  # the channel's activation there
    boxes: np.ndarray  # (k, 4) x0, y0, x1, y1 in the model's input square
    crops: list[np.ndarray]  # uint8 (p, p, 3) crops of the images at input size


@torch.no_grad()
def top_patches(
    model: Backbone,
    prepare: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    *,
    layer: str | int | None = None,
    channel: int | None = None,
    k: int = 9,
    batch_size: int = 128,
) -> Patches:
    """The ``k`` images whose strongest response in ``channel`` of ``layer`` is highest, each
    cropped to the receptive field around that response (one patch per image, so the grid
    shows k different images). ``channel=None`` takes the channel with the highest mean
    activation over the images."""
    model.eval()
    x0 = prepare(images[:1])
    side, device = int(x0.shape[-1]), x0.device
    st = patch_stage(model, side, device) if layer is None else stage_index(model, layer)
    maps_max = []
    means = None
    for s in range(0, len(images), batch_size):
        y = model.forward_stages(prepare(images[s : s + batch_size]), 0, st + 1).float()
        if y.dim() != 4:
            raise HeadstartError(f"stage {model.stage_names[st]} has no spatial map; choose an earlier stage")
        m = y.mean(dim=(0, 2, 3)) * len(y)
        means = m if means is None else means + m
        maps_max.append(y.flatten(2).max(2))  # values (B, C), positions (B, C)
        h, w = y.shape[-2:]
    ch = int(torch.argmax(means)) if channel is None else int(channel)
    if not 0 <= ch < means.numel():
        raise HeadstartError(f"stage {model.stage_names[st]} has channels 0..{means.numel() - 1}, not {ch}")
    vals = torch.cat([v.values[:, ch] for v in maps_max]).cpu()
    pos = torch.cat([v.indices[:, ch] for v in maps_max]).cpu()
    order = torch.argsort(vals, descending=True)[:k]
    patch, _ = receptive_field(model, st, side, device)
    stride = side / w
    boxes, crops = [], []
    for i in order.tolist():
        py, px = divmod(int(pos[i]), int(w))
        cy, cx = (py + 0.5) * side / h, (px + 0.5) * stride
        half = min(patch, side) / 2
        x_0 = int(round(min(max(cx - half, 0), side - 2 * half)))
        y_0 = int(round(min(max(cy - half, 0), side - 2 * half)))
        p = int(round(2 * half))
        boxes.append((x_0, y_0, x_0 + p, y_0 + p))
        img = _input_uint8(images[i : i + 1], side)
        crops.append(img[y_0 : y_0 + p, x_0 : x_0 + p])
    return Patches(
        layer=model.stage_names[st], channel=ch, patch=min(patch, side), stride=int(round(stride)),
        indices=order.numpy(), values=vals[order].numpy(), boxes=np.asarray(boxes, dtype=np.int64), crops=crops,
    )


def _input_uint8(image: torch.Tensor, side: int) -> np.ndarray:
    """One uint8 (1, 3, H, W) image at the model's input side, as (side, side, 3) for display."""
    x = image.float()
    if x.shape[-1] != side:
        x = torch.nn.functional.interpolate(x, size=(side, side), mode="bilinear", align_corners=False, antialias=x.shape[-1] > side)
    return x[0].clamp(0, 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


def display_images(images: torch.Tensor, side: int) -> np.ndarray:
    """uint8 (N, 3, H, W) → (N, side, side, 3), resized like the model input (for overlays)."""
    return np.stack([_input_uint8(images[i : i + 1], side) for i in range(len(images))]) if len(images) else np.zeros((0, side, side, 3), np.uint8)

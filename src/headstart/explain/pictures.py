"""Pictures made of pixels: CAM overlays, boxes drawn on them, captioned grids (Pillow)."""

from __future__ import annotations

import io
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from pytorch_grad_cam.utils.image import show_cam_on_image

from .localize import Box

MIN_SIDE = 112
"""Overlays smaller than this are enlarged (28-px Fashion-MNIST maps are unreadable at 1:1)."""


def overlay(image: np.ndarray, cam: np.ndarray, *, weight: float = 0.5) -> np.ndarray:
    """A (S, S, 3) uint8 image with its (S, S) CAM as a jet heatmap on top (the library's
    blend: ``weight`` · image + (1 − weight) · heatmap)."""
    return show_cam_on_image(image.astype(np.float32) / 255.0, cam.astype(np.float32), use_rgb=True, image_weight=weight)


def enlarge(img: Image.Image, min_side: int = MIN_SIDE) -> tuple[Image.Image, float]:
    """Scale a small picture up (nearest neighbour keeps pixels honest); returns the factor."""
    f = max(1, int(np.ceil(min_side / max(1, min(img.size)))))
    return (img.resize((img.width * f, img.height * f), Image.Resampling.NEAREST) if f > 1 else img), float(f)


def draw_boxes(img: Image.Image, boxes: Sequence[tuple[Box | None, str]], *, scale: float = 1.0, width: int = 2) -> Image.Image:
    """Draw ``(box, colour)`` pairs (square coordinates × ``scale``) on a copy of ``img``."""
    out = img.copy()
    d = ImageDraw.Draw(out)
    for box, colour in boxes:
        if box is not None:
            d.rectangle([box[0] * scale, box[1] * scale, box[2] * scale - 1, box[3] * scale - 1], outline=colour, width=width)
    return out


def grid(tiles: Sequence[np.ndarray | Image.Image], captions: Sequence[str] | None = None, *, columns: int = 8, pad: int = 4) -> Image.Image:
    """Tiles in rows of ``columns`` with an optional caption line under each (white sheet)."""
    ims = [t if isinstance(t, Image.Image) else Image.fromarray(np.asarray(t)) for t in tiles]
    if not ims:
        return Image.new("RGB", (1, 1), "white")
    side = max(max(i.size) for i in ims)
    ims = [i.convert("RGB").resize((side, side), Image.Resampling.NEAREST) if i.size != (side, side) else i.convert("RGB") for i in ims]
    font = ImageFont.load_default()
    cap_h = 12 * max((c.count("\n") + 1 for c in captions), default=1) if captions else 0
    cols = min(columns, len(ims))
    rows = (len(ims) + cols - 1) // cols
    sheet = Image.new("RGB", (cols * (side + pad) + pad, rows * (side + pad + cap_h) + pad), "white")
    d = ImageDraw.Draw(sheet)
    for k, im in enumerate(ims):
        r, c = divmod(k, cols)
        x, y = pad + c * (side + pad), pad + r * (side + pad + cap_h)
        sheet.paste(im, (x, y))
        if captions:
            d.multiline_text((x, y + side + 1), captions[k], fill="black", font=font, spacing=1)
    return sheet


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return buf.getvalue()

"""The segmentation pictures of the HTML report: rows of image | true mask | predicted mask |
overlay, the best and worst images by their own mIoU, and the image where two segmenters (one
per upsampling) differ most.

Pictures only; the scores come from ``metrics.py`` and the page from ``report/html.py``.
"""

from __future__ import annotations

import io
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

from .masks import IGNORE

CELL = 128
"""Side of each picture in a row, in pixels (masks are enlarged by nearest neighbour)."""


def palette(num_classes: int) -> np.ndarray:
    """(C, 3) uint8 colours: class 0 black (background, by convention), the others spread over
    the hue circle by the golden ratio so neighbouring indices differ."""
    import colorsys

    colours = [(0, 0, 0)]
    for c in range(1, num_classes):
        r, g, b = colorsys.hsv_to_rgb((c * 0.618033988749895) % 1.0, 0.85, 0.95)
        colours.append((int(r * 255), int(g * 255), int(b * 255)))
    return np.asarray(colours[:num_classes], dtype=np.uint8)


def coloured(mask: np.ndarray, num_classes: int) -> Image.Image:
    """A mask in the palette's colours (ignored pixels white)."""
    pal = np.zeros((256, 3), dtype=np.uint8)
    pal[:num_classes] = palette(num_classes)
    pal[IGNORE] = 255
    return Image.fromarray(pal[np.asarray(mask, dtype=np.uint8)])


def overlay(image: Image.Image, mask: np.ndarray, num_classes: int, alpha: float = 0.5) -> Image.Image:
    """The image with each pixel tinted by its class colour (class 0 left as it is)."""
    base = np.asarray(image.convert("RGB"), dtype=np.float64)
    m = np.asarray(mask)
    colours = palette(num_classes)[np.clip(m, 0, num_classes - 1)].astype(np.float64)
    tint = ((m > 0) & (m != IGNORE))[..., None] * alpha
    return Image.fromarray(np.clip(base * (1 - tint) + colours * tint, 0, 255).astype(np.uint8))


def _fit(img: Image.Image, nearest: bool) -> Image.Image:
    w, h = img.size
    s = CELL / max(w, h)
    return img.resize((max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.NEAREST if nearest else Image.Resampling.BILINEAR)


def rows_sheet(rows: Sequence[tuple[Image.Image, Sequence[tuple[np.ndarray, str]], str]], num_classes: int) -> bytes:
    """PNG of one row per image: the image, then each (mask, title) given (the truth first,
    then predictions), then the last mask's overlay; ``label`` above each row."""
    if not rows:
        raise ValueError("no rows to draw")
    cols = 2 + max(len(m) for _, m, _ in rows)
    top = 14
    sheet = Image.new("RGB", (cols * (CELL + 4), len(rows) * (CELL + top + 18)), "white")
    draw = ImageDraw.Draw(sheet)
    for r, (image, masks, label) in enumerate(rows):
        y = r * (CELL + top + 18)
        draw.text((2, y), label, fill=(0, 0, 0))
        cells = [(image, "image", False)] + [(coloured(m, num_classes), t, True) for m, t in masks]
        cells.append((overlay(image, masks[-1][0], num_classes), "overlay: " + masks[-1][1], False))
        for c, (img, title, nearest) in enumerate(cells):
            x = c * (CELL + 4)
            sheet.paste(_fit(img, nearest), (x, y + top))
            draw.text((x + 2, y + top + CELL + 2), title[:22], fill=(60, 60, 60))
    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    return buf.getvalue()


def legend(classes: Sequence[str]) -> bytes:
    """PNG of the class colours with their names."""
    pal = palette(len(classes))
    img = Image.new("RGB", (180, 16 * len(classes) + 4), "white")
    draw = ImageDraw.Draw(img)
    for i, name in enumerate(classes):
        draw.rectangle([4, 4 + 16 * i, 16, 16 + 16 * i], fill=tuple(int(v) for v in pal[i]), outline=(120, 120, 120))
        draw.text((22, 4 + 16 * i), f"{i} {name}", fill=(0, 0, 0))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()

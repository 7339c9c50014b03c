"""A contact sheet: each row one image, its original then several augmented draws."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image, ImageDraw

from ..fileio import atomic_write

LABEL_WIDTH = 120
HEADER = 22


def contact_sheet(
    images: torch.Tensor,
    labels: list[str],
    augment: Callable | None,
    label_indices: list[int],
    *,
    copies: int = 6,
    cell: int = 96,
    title: str = "",
) -> Image.Image:
    """uint8 images (N, 3, H, W) → a sheet of N rows: the class name, the original, then
    ``copies`` augmented versions (each a fresh random draw), every cell ``cell`` pixels."""
    n = len(images)
    width = LABEL_WIDTH + (copies + 1) * (cell + 4) + 4
    height = HEADER * 2 + n * (cell + 4) + 4
    sheet = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    draw.text((6, 4), title, fill=(0, 0, 0))
    draw.text((LABEL_WIDTH + 4, HEADER + 4), "original", fill=(0, 0, 0))
    draw.text((LABEL_WIDTH + cell + 12, HEADER + 4), f"augmented ({copies} random draws)", fill=(0, 0, 0))
    for r in range(n):
        y = HEADER * 2 + r * (cell + 4) + 4
        draw.text((6, y + cell // 2 - 6), labels[r][:18], fill=(0, 0, 0))
        cells = [images[r]] + [images[r] if augment is None else augment(images[r], label_indices[r]) for _ in range(copies)]
        for c, img in enumerate(cells):
            arr = np.ascontiguousarray(img.permute(1, 2, 0).numpy())
            tile = Image.fromarray(arr)
            resample = Image.NEAREST if max(arr.shape[:2]) * 2 <= cell else Image.BILINEAR
            tile = tile.resize((cell, cell), resample)
            x = LABEL_WIDTH + c * (cell + 4) + 4
            sheet.paste(tile, (x, y))
            if c == 0:
                draw.rectangle([x - 2, y - 2, x + cell + 1, y + cell + 1], outline=(40, 90, 200), width=2)
    return sheet


def write_sheet(sheet: Image.Image, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: sheet.save(tmp, format="PNG"))
    return path

"""Weak localization: boxes and masks from a thresholded CAM, and IoU against given boxes.

The CAM is thresholded at a fraction of its maximum (maps come scaled to a maximum of 1); the
mask is every pixel above it, the box is the bounding box of the mask's largest 8-connected
component (Zhou et al., 2016, used 20 % of the maximum and the largest component). The default
here, 0.6, is where Grad-CAM boxes matched best on the placed-objects set of
``benchmarks/explain.py`` (mean IoU 0.526 and CorLoc 0.61 on 500 images, against 0.369 / 0.23
at 0.2 and a centred-box reference of 0.307; Grad-CAM++ and Score-CAM also peak at 0.6,
Eigen-CAM at 0.5). The maps are coarse (5 × 5 cells at 160 px), so lower thresholds grow the
box over the background.

Ground truth comes as a CSV: ``path,x0,y0,x1,y1`` (pixels of the original image as shown
upright, i.e. with its EXIF orientation applied; several rows for several objects) or ``path,mask`` (an image whose non-zero pixels are the object). Boxes are
mapped into the square the model sees (shorter side resized, centre crop) and back.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from ..errors import DataError

DEFAULT_THRESHOLD = 0.6

Box = tuple[float, float, float, float]
"""x0, y0, x1, y1 with x1/y1 exclusive, in pixels."""


def cam_mask(cam: np.ndarray, threshold: float = DEFAULT_THRESHOLD) -> np.ndarray:
    """Pixels whose CAM value is at least ``threshold`` × the map's maximum."""
    if not 0 < threshold < 1:
        raise ValueError(f"threshold is a fraction of the CAM maximum, between 0 and 1; got {threshold}")
    top = float(cam.max())
    if top <= 0:
        return np.zeros(cam.shape, dtype=bool)
    return cam >= threshold * top


def mask_box(mask: np.ndarray) -> Box | None:
    """Bounding box of the largest 8-connected component (``None`` for an empty mask)."""
    labels, n = ndimage.label(mask, structure=np.ones((3, 3), dtype=int))
    if n == 0:
        return None
    sizes = np.bincount(labels.ravel())[1:]
    ys, xs = np.nonzero(labels == int(np.argmax(sizes)) + 1)
    return float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)


def cam_box(cam: np.ndarray, threshold: float = DEFAULT_THRESHOLD) -> Box | None:
    return mask_box(cam_mask(cam, threshold))


def box_iou(a: Box | None, b: Box | None) -> float:
    """Intersection over union of two boxes (0 when either is missing)."""
    if a is None or b is None:
        return 0.0
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def boxes_mask(boxes: list[Box], side: int) -> np.ndarray:
    """A (side, side) mask that is True inside any of ``boxes`` (square coordinates)."""
    m = np.zeros((side, side), dtype=bool)
    for x0, y0, x1, y1 in boxes:
        m[max(0, int(round(y0))) : max(0, int(round(y1))), max(0, int(round(x0))) : max(0, int(round(x1)))] = True
    return m


@dataclass(frozen=True)
class SquareMap:
    """How an original ``width`` × ``height`` image maps into the model's ``side`` square:
    the shorter side is resized to ``side`` and the longer one centre-cropped."""

    width: int
    height: int
    side: int

    @property
    def scale(self) -> float:
        return self.side / min(self.width, self.height)

    @property
    def offset(self) -> tuple[float, float]:
        s = min(self.width, self.height)
        return (self.width - s) / 2.0, (self.height - s) / 2.0

    def to_square(self, box: Box) -> Box:
        (ox, oy), k = self.offset, self.scale
        x0, y0, x1, y1 = ((box[0] - ox) * k, (box[1] - oy) * k, (box[2] - ox) * k, (box[3] - oy) * k)
        c = lambda v: min(max(v, 0.0), float(self.side))  # noqa: E731
        return c(x0), c(y0), c(x1), c(y1)

    def to_original(self, box: Box) -> Box:
        (ox, oy), k = self.offset, self.scale
        return box[0] / k + ox, box[1] / k + oy, box[2] / k + ox, box[3] / k + oy


def upright_size(path: str | Path) -> tuple[int, int]:
    """Width and height of an image as shown upright: images are decoded with their EXIF
    orientation applied, so a phone photo stored sideways (orientation 5–8) swaps its sides.
    Reads only the header."""
    with Image.open(path) as im:
        w, h = im.size
        orientation = im.getexif().get(0x0112, 1)
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


@dataclass
class GroundTruth:
    """Per image (by resolved path): boxes in original pixels, or a mask image path."""

    boxes: dict[str, list[Box]] = field(default_factory=dict)
    masks: dict[str, str] = field(default_factory=dict)
    source: str = ""

    def __contains__(self, path: object) -> bool:
        key = str(Path(str(path)).resolve())
        return key in self.boxes or key in self.masks

    def mask_for(self, path: str | Path, side: int) -> np.ndarray | None:
        """The object mask in the model's square (``None`` when the image has no ground truth)."""
        key = str(Path(path).resolve())
        sq = SquareMap(*upright_size(path), side)
        if key in self.boxes:
            return boxes_mask([sq.to_square(b) for b in self.boxes[key]], side)
        if key in self.masks:
            from ..data.decode import load_image, to_square_uint8

            # non-zero is the object (a 0/255 mask, or a mask of class indices 1, 2, ...): made
            # binary before the resize, so the interpolation cannot blend small indices away
            raw = np.asarray(load_image(self.masks[key])).max(axis=2) > 0
            arr = to_square_uint8(Image.fromarray(raw.astype(np.uint8) * 255).convert("RGB"), side)
            return arr.max(axis=2) > 127
        return None

    def boxes_for(self, path: str | Path, side: int) -> list[Box]:
        key = str(Path(path).resolve())
        if key not in self.boxes:
            return []
        sq = SquareMap(*upright_size(path), side)
        return [sq.to_square(b) for b in self.boxes[key]]


def read_ground_truth(csv_path: str | Path) -> GroundTruth:
    """Read a ground-truth CSV (see the module docstring); relative paths are relative to it."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise DataError(f"ground-truth file {csv_path} does not exist")
    gt = GroundTruth(source=str(csv_path))
    with csv_path.open(newline="") as f:
        reader = csv.DictReader(f)
        cols = set(reader.fieldnames or [])
        has_box, has_mask = {"x0", "y0", "x1", "y1"} <= cols, "mask" in cols
        if "path" not in cols or not (has_box or has_mask):
            raise DataError(
                f"{csv_path} needs a header with 'path' and either x0,y0,x1,y1 (a box in pixels of the "
                f"original image) or 'mask' (a mask image); it has: {', '.join(sorted(cols)) or 'no header'}"
            )
        for line, row in enumerate(reader, start=2):
            p = Path(row["path"])
            key = str((p if p.is_absolute() else csv_path.parent / p).resolve())
            if has_mask and row.get("mask"):
                m = Path(row["mask"])
                gt.masks[key] = str(m if m.is_absolute() else csv_path.parent / m)
                continue
            try:
                box = tuple(float(row[k]) for k in ("x0", "y0", "x1", "y1"))
            except (TypeError, ValueError):
                raise DataError(f"{csv_path}, line {line}: x0,y0,x1,y1 must be numbers, got {[row.get(k) for k in ('x0', 'y0', 'x1', 'y1')]}") from None
            if box[2] <= box[0] or box[3] <= box[1]:
                raise DataError(f"{csv_path}, line {line}: the box {box} is empty; x1 must exceed x0 and y1 exceed y0")
            gt.boxes.setdefault(key, []).append(box)  # type: ignore[arg-type]
    if not gt.boxes and not gt.masks:
        raise DataError(f"{csv_path} has a header but no rows")
    return gt

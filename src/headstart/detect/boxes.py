"""Detection data: images with labelled boxes, read from a CSV and checked before anything trains.

The CSV is the one ``explain --gt`` reads, plus a label column::

    path,x0,y0,x1,y1,label
    shoes/12.png,10,14,58,60,Sneaker
    shoes/12.png,60,2,100,40,Bag
    empty/3.png,,,,,

One row per box, in pixels of the image as shown upright (its EXIF orientation applied), ``x1``
and ``y1`` exclusive; relative paths are relative to the CSV. An image whose only row has empty
coordinates has no objects (a background image: it teaches what is not an object). Without a
``label`` column every box is of one class, ``object``. ``DATA`` is the CSV itself or a folder
holding ``boxes.csv``. The classes are ``classes.txt`` beside the CSV (one per line, in order) or
else the labels found, sorted.

Every row is checked — a missing or unreadable image, coordinates that are not numbers, an empty
box, a box outside its image, a label that is not among ``classes.txt`` — and all problems are
listed at once (up to a screenful), naming the file and line, before any training. A box that
leaves its image by a pixel or two (rounding in a labelling tool) is clipped and counted in a
note; one more than :data:`CLIP_TOLERANCE` of the image's side outside is an error.

Images are held at one square training size, stretched (each side scaled on its own, boxes
scaled with them): a detector does not need the shape kept, only the same mapping at training
and prediction, and every pixel is kept — a centre crop would cut objects off.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..data.decode import load_image
from ..errors import BadImageError, DataError

MAX_ERRORS = 20
"""Problems listed in one error before the rest are counted."""
CLIP_TOLERANCE = 0.02
"""A box may leave its image by this share of the image's side (then it is clipped); more is an error."""
ONE_CLASS = "object"


@dataclass
class BoxSet:
    """Images and their boxes at ``size`` × ``size``.

    ``images`` (N, 3, S, S) uint8; ``boxes[i]`` (k, 4) float32 in the square's pixels and
    ``labels[i]`` (k,) int64 class indices (0-based into ``classes``); ``paths`` the image files,
    ``sizes`` their original upright (width, height); ``original_boxes[i]`` the boxes as given.
    """

    images: torch.Tensor
    boxes: list[torch.Tensor]
    labels: list[torch.Tensor]
    classes: list[str]
    paths: list[Path]
    sizes: list[tuple[int, int]]
    original_boxes: list[np.ndarray]
    source: str
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def num_boxes(self) -> int:
        return int(sum(len(b) for b in self.boxes))

    def subset(self, idx: np.ndarray | list[int]) -> "BoxSet":
        idx = [int(i) for i in idx]
        return BoxSet(images=self.images[idx], boxes=[self.boxes[i] for i in idx], labels=[self.labels[i] for i in idx],
                      classes=self.classes, paths=[self.paths[i] for i in idx], sizes=[self.sizes[i] for i in idx],
                      original_boxes=[self.original_boxes[i] for i in idx], source=self.source, notes=list(self.notes))

    def targets(self, i: int) -> dict[str, np.ndarray]:
        """Image ``i``'s boxes at its original size and their labels (as ``detect eval`` scores them)."""
        return {"boxes": self.original_boxes[i].astype(np.float32).reshape(-1, 4), "labels": self.labels[i].numpy()}


def csv_of(data: str | Path) -> Path:
    """The boxes CSV that ``data`` names: the file itself, or ``boxes.csv`` in the folder."""
    p = Path(data)
    if p.is_dir():
        if (p / "boxes.csv").is_file():
            return p / "boxes.csv"
        raise DataError(f"{p} is a folder without boxes.csv; detection data is a CSV of path,x0,y0,x1,y1,label rows "
                        "(give the CSV, or put it in the folder as boxes.csv)")
    if not p.is_file():
        raise DataError(f"{p} does not exist; detection data is a CSV of path,x0,y0,x1,y1,label rows, or a folder holding boxes.csv")
    return p


def _errors(problems: list[str], source: Path) -> DataError:
    shown = problems[:MAX_ERRORS]
    more = f"\n  … and {len(problems) - MAX_ERRORS} more" if len(problems) > MAX_ERRORS else ""
    return DataError(f"{source}: {len(problems)} problem(s) with the boxes:\n  " + "\n  ".join(shown) + more
                     + "\nFix these rows or files and run again; nothing has been trained yet.")


def read_rows(csv_path: Path) -> tuple[dict[Path, list[tuple[int, tuple[float, float, float, float] | None, str]]], bool, list[str]]:
    """Rows by image: ``{path: [(line, box or None, label), ...]}``, whether labels were given,
    and the problems found in the text itself (the images are not opened here)."""
    problems: list[str] = []
    by_image: dict[Path, list] = {}
    with csv_path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        cols = set(reader.fieldnames or [])
        if "path" not in cols or not {"x0", "y0", "x1", "y1"} <= cols:
            raise DataError(f"{csv_path} needs a header with path,x0,y0,x1,y1 (a box in pixels of the image as shown upright) and "
                            f"optionally label; it has: {', '.join(sorted(cols)) or 'no header'}")
        labelled = "label" in cols
        for line, row in enumerate(reader, start=2):
            name = (row.get("path") or "").strip()
            if not name:
                problems.append(f"line {line}: no path")
                continue
            p = Path(name)
            path = (p if p.is_absolute() else csv_path.parent / p).resolve()
            raw = [(row.get(k) or "").strip() for k in ("x0", "y0", "x1", "y1")]
            label = (row.get("label") or "").strip() if labelled else ONE_CLASS
            if not any(raw):
                by_image.setdefault(path, []).append((line, None, ""))
                continue
            try:
                box = tuple(float(v) for v in raw)
            except ValueError:
                problems.append(f"line {line} ({name}): x0,y0,x1,y1 must be numbers, got {raw}")
                continue
            if not np.all(np.isfinite(box)):
                problems.append(f"line {line} ({name}): x0,y0,x1,y1 must be finite numbers, got {raw}")
                continue
            if box[2] <= box[0] or box[3] <= box[1]:
                problems.append(f"line {line} ({name}): the box {raw} is empty; x1 must exceed x0 and y1 exceed y0")
                continue
            if not label:
                problems.append(f"line {line} ({name}): a box without a label; give its class in the label column")
                continue
            by_image.setdefault(path, []).append((line, box, label))  # type: ignore[arg-type]
    return by_image, labelled, problems


def read_classes(csv_path: Path, found: set[str]) -> list[str]:
    """``classes.txt`` beside the CSV (one name per line), else the labels found, sorted."""
    txt = csv_path.parent / "classes.txt"
    if txt.is_file():
        names = [ln.strip() for ln in txt.read_text(encoding="utf-8").splitlines()]
        if not names or any(not n for n in names) or len(set(names)) != len(names):
            raise DataError(f"{txt}: one class name per line, each once, no blank lines")
        return names
    return sorted(found)


def load_boxes(data: str | Path, *, size: int, classes: list[str] | None = None) -> BoxSet:
    """The images and boxes of ``data`` (see the module) at ``size`` px. With ``classes`` (a
    run's), labels must be among them and keep the run's indices."""
    csv_path = csv_of(data)
    by_image, labelled, problems = read_rows(csv_path)
    found = {lab for rows in by_image.values() for _, box, lab in rows if box is not None}
    names = list(classes) if classes is not None else read_classes(csv_path, found)
    index = {n: i for i, n in enumerate(names)}
    images, boxes, labels, paths, sizes, originals = [], [], [], [], [], []
    clipped = 0
    for path, rows in by_image.items():
        try:
            image = load_image(path)
        except BadImageError as exc:
            problems.append(f"line {rows[0][0]} ({path}): {exc.reason}")
            continue
        w, h = image.size
        kept_boxes, kept_labels = [], []
        bad = False
        for line, box, label in rows:
            if box is None:
                continue
            if label not in index:
                where = "the run's classes" if classes is not None else f"{csv_path.parent / 'classes.txt'}"
                problems.append(f"line {line} ({path.name}): label {label!r} is not among {where} ({', '.join(names[:10])})")
                bad = True
                continue
            x0, y0, x1, y1 = box
            tol_x, tol_y = CLIP_TOLERANCE * w, CLIP_TOLERANCE * h
            if x0 < -tol_x or y0 < -tol_y or x1 > w + tol_x or y1 > h + tol_y:
                problems.append(f"line {line} ({path.name}): the box {list(box)} leaves the {w}×{h} image (pixels of the image as shown "
                                "upright, EXIF orientation applied)")
                bad = True
                continue
            c = (min(max(x0, 0.0), w), min(max(y0, 0.0), h), min(max(x1, 0.0), w), min(max(y1, 0.0), h))
            if c != box:
                clipped += 1
            if c[2] - c[0] < 1 or c[3] - c[1] < 1:
                problems.append(f"line {line} ({path.name}): the box {list(box)} is under a pixel wide inside the {w}×{h} image")
                bad = True
                continue
            kept_boxes.append(c)
            kept_labels.append(index[label])
        if bad:
            continue
        arr = np.asarray(image.resize((size, size), resample=Image.Resampling.BILINEAR, reducing_gap=None), dtype=np.uint8)
        images.append(torch.from_numpy(arr.copy()).permute(2, 0, 1))
        orig = np.asarray(kept_boxes, dtype=np.float64).reshape(-1, 4)
        scale = np.array([size / w, size / h, size / w, size / h])
        boxes.append(torch.from_numpy((orig * scale).astype(np.float32)))
        labels.append(torch.tensor(kept_labels, dtype=torch.int64))
        paths.append(path)
        sizes.append((w, h))
        originals.append(orig)
    if problems:
        raise _errors(problems, csv_path)
    if not paths:
        raise DataError(f"{csv_path} has a header but no rows; give one row per box: path,x0,y0,x1,y1,label")
    if not names:
        raise DataError(f"{csv_path}: no image has a box; detection needs at least one labelled box")
    notes = []
    if clipped:
        notes.append(f"{clipped} box(es) left their image by under {CLIP_TOLERANCE:.0%} of its side and were clipped to it")
    if not labelled:
        notes.append(f"no label column: every box is one class, {ONE_CLASS!r}")
    empty = sum(1 for b in boxes if len(b) == 0)
    if empty:
        notes.append(f"{empty} image(s) without boxes train as background")
    return BoxSet(images=torch.stack(images), boxes=boxes, labels=labels, classes=names, paths=paths, sizes=sizes,
                  original_boxes=originals, source=str(csv_path), notes=notes)


def image_sizes(data: str | Path, limit: int = 200) -> list[tuple[int, int]]:
    """Upright sizes of the first ``limit`` images the CSV names (headers only), for the default size."""
    from ..explain.localize import upright_size

    csv_path = csv_of(data)
    by_image, _, _ = read_rows(csv_path)
    out = []
    for p in list(by_image)[:limit]:
        try:
            out.append(upright_size(p))
        except (OSError, ValueError):
            continue
    return out

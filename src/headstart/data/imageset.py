"""``ImageSet``: the one in-memory description of a dataset that every later stage reads.

An image set is either file paths (a user's folder or CSV, decoded on demand) or one uint8 array
(built-in sets such as Fashion-MNIST, already decoded). Both answer the same questions — how many
images, which label, the RGB pixels of image ``i`` at a given size — so training, probing and the
report never care where the pixels came from.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from PIL import Image

from headstart.data.decode import decoder_warnings, load_image, to_square_uint8
from headstart.errors import DataError

UNLABELED = -1
"""Label value of an image with no class (unlabeled pools, prediction inputs)."""

FOLDER_LAYOUT = "root/<class>/<image> (one subfolder per class, images inside it)"
"""The folder layout headstart expects, quoted in error messages."""


@dataclass
class ImageSet:
    """Images, their labels and class names, plus the files that could not be used.

    Attributes:
        images: Either a list of image file paths, or a uint8 array of shape (N, H, W) for
            grayscale or (N, H, W, 3) for RGB.
        labels: int64 array of length N; ``-1`` marks an unlabeled image.
        classes: Class names; label ``i`` means ``classes[i]``.
        name: Where the set came from (a built-in name, a folder or a CSV path), used in messages
            and run records.
        skipped: ``(path, reason)`` for each bad file left out while loading, so the user can see
            and fix them instead of losing them silently.
        root: The folder whose subfolders are the classes, when the set is a class-per-folder
            folder; error messages name ``root/<class>`` so the user knows which folder to fix.
        digests: For file sets checked while loading, the SHA-256 of each file's bytes (aligned
            with ``images``), so caches are keyed by content rather than by path and time.
        warned: ``(path, warnings)`` for files that decoded but made the decoder complain, to be
            counted in one line instead of printed raw.
        ignored: Files found beside the images that headstart does not decode (``notes.txt``,
            ``vector.svg``, ``.DS_Store``), to be reported as a count per extension.
    """

    images: list[str] | np.ndarray
    labels: np.ndarray
    classes: list[str]
    name: str
    skipped: list[tuple[str, str]] = field(default_factory=list)
    root: str | None = None
    digests: list[str] | None = None
    warned: list[tuple[str, str]] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        if isinstance(self.images, np.ndarray):
            if self.images.dtype != np.uint8:
                raise ValueError(f"image arrays must be uint8, got {self.images.dtype}")
            if not (self.images.ndim == 3 or (self.images.ndim == 4 and self.images.shape[3] == 3)):
                raise ValueError(
                    f"image arrays must be (N, H, W) or (N, H, W, 3), got {self.images.shape}"
                )
        else:
            self.images = [os.fspath(p) for p in self.images]
        if len(self.images) != len(self.labels):
            raise ValueError(
                f"{len(self.images)} images but {len(self.labels)} labels in {self.name}"
            )
        if self.digests is not None and len(self.digests) != len(self.labels):
            raise ValueError(f"{len(self.digests)} digests for {len(self.labels)} images in {self.name}")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def is_array(self) -> bool:
        """Whether the pixels are already in memory (built-in sets) rather than files."""
        return isinstance(self.images, np.ndarray)

    @property
    def native_size(self) -> int | None:
        """Image height of an array set (its natural training size); ``None`` for files."""
        if isinstance(self.images, np.ndarray):
            return int(self.images.shape[1])
        return None

    def typical_size(self, sample: int = 256) -> int | None:
        """The native side of an array set; for files, the median longer side of up to
        ``sample`` of them (read from the headers, evenly spaced through the list), so rules can
        treat a folder of 48-px icons like other small images. ``None`` if none can be read."""
        if self.native_size is not None:
            return self.native_size
        from PIL import Image

        step = max(1, len(self.images) // sample)
        sides = []
        with decoder_warnings():  # header oddities were reported when the files were checked
            for p in list(self.images)[::step][:sample]:
                try:
                    with Image.open(p) as img:
                        sides.append(max(img.size))
                except Exception:  # noqa: BLE001 - any unreadable header just gives no size
                    continue
        return int(np.median(sides)) if sides else None

    def subset(self, indices: Sequence[int] | np.ndarray) -> ImageSet:
        """The images at ``indices``, with the same classes so label numbers stay meaningful."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if isinstance(self.images, np.ndarray):
            images: list[str] | np.ndarray = self.images[idx]
        else:
            images = [self.images[i] for i in idx.tolist()]
        return ImageSet(
            images=images,
            labels=self.labels[idx].copy(),
            classes=list(self.classes),
            name=self.name,
            skipped=list(self.skipped),
            root=self.root,
            digests=None if self.digests is None else [self.digests[i] for i in idx.tolist()],
            warned=list(self.warned),
            ignored=list(self.ignored),
        )

    def class_counts(self) -> np.ndarray:
        """Images per class (length ``len(classes)``; unlabeled images are not counted)."""
        labeled = self.labels[self.labels >= 0]
        return np.bincount(labeled, minlength=len(self.classes)).astype(np.int64)

    def get_rgb(self, i: int, size: int | None = None) -> np.ndarray:
        """Image ``i`` as an (H, W, 3) uint8 array.

        Args:
            i: Index into the set.
            size: Output side in pixels (shorter side resized, centre-cropped square). ``None``
                keeps the stored size: the array's own shape, or the file's decoded shape.

        Raises:
            BadImageError: For file sets, when the file cannot be decoded.
        """
        if isinstance(self.images, np.ndarray):
            arr = self.images[i]
            if size is not None and arr.shape[:2] != (size, size):
                return to_square_uint8(Image.fromarray(_gray_to_rgb(arr)), size)
            return _gray_to_rgb(arr)
        img = load_image(self.images[i])
        if size is not None:
            return to_square_uint8(img, size)
        return np.asarray(img, dtype=np.uint8).copy()

    def describe_class(self, label: int) -> str:
        """Where class ``label`` lives, phrased for an error message (its folder when known)."""
        cls = self.classes[label]
        if self.root is not None:
            return f"class folder {os.path.join(self.root, cls)}"
        return f"class {cls!r} in {self.name}"


def _gray_to_rgb(arr: np.ndarray) -> np.ndarray:
    if arr.ndim == 2:
        return np.repeat(arr[..., None], 3, axis=2)
    return np.ascontiguousarray(arr)


def check_trainable(imageset: ImageSet) -> None:
    """Refuse a set a classifier cannot be trained on, saying what to fix.

    A classifier needs at least two classes and at least one image in every class: an empty class
    would have a head output that is never trained and a per-class accuracy of 0/0.

    Raises:
        DataError: No images, fewer than two classes, or a class with no images.
    """
    where = imageset.root or imageset.name
    if len(imageset) == 0:
        raise DataError(f"no images found in {where}; expected the layout {FOLDER_LAYOUT}")
    if len(imageset.classes) == 0 or not np.any(imageset.labels >= 0):
        raise DataError(
            f"{where} has no labeled images; a classifier needs images sorted into class "
            f"folders: {FOLDER_LAYOUT}"
        )
    if len(imageset.classes) < 2:
        raise DataError(
            f"found only class {imageset.classes[0]!r} in {where}; a classifier needs at least "
            f"two class folders ({FOLDER_LAYOUT})"
        )
    counts = imageset.class_counts()
    empty = [int(c) for c in np.flatnonzero(counts == 0)]
    if empty:
        names = "; ".join(imageset.describe_class(c) for c in empty)
        raise DataError(
            f"{len(empty)} class(es) have no images: {names}; add images to them or remove them"
        )

"""PyTorch views of an ImageSet: a per-item Dataset and a decode-once tensor.

Images stay uint8 (3xSxS) up to here; conversion to float and normalisation belong to the
backbone's preprocessing, which travels with the weights, so the data layer never needs to know
which network will read it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from headstart.data._progress import default_workers, map_with_progress
from headstart.data.imageset import ImageSet

Transform = Callable[[torch.Tensor], torch.Tensor]


def _chw(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))


class ImageDataset(Dataset):
    """Items ``(uint8 tensor 3xSxS, label)`` of an ImageSet, decoded on demand.

    Holds only the ImageSet (file paths or one array), a size and a transform, so it pickles
    cheaply into DataLoader worker processes; each worker decodes its own files.

    Args:
        imageset: The images and labels.
        size: Side of the square each image is resized and centre-cropped to; ``None`` keeps an
            array set's native size (and a file's decoded size, which is only batchable if all
            files share it).
        transform: Applied to each uint8 CHW tensor, e.g. a ``torchvision.transforms.v2``
            pipeline for augmentation.
    """

    def __init__(
        self, imageset: ImageSet, size: int | None, transform: Transform | None = None
    ) -> None:
        self.imageset = imageset
        self.size = size
        self.transform = transform

    def __len__(self) -> int:
        return len(self.imageset)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = _chw(self.imageset.get_rgb(index, self.size))
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.imageset.labels[index])


def preload(imageset: ImageSet, size: int | None, num_workers: int = 0, *, into: Path | None = None) -> torch.Tensor:
    """Decode every image once into one uint8 tensor of shape (N, 3, S, S).

    Decoding and resizing a JPEG costs far more than a training step of a small head, so sets that
    fit in memory (N x 3 x S x S bytes: 2,000 images at 224 px is 300 MB) are decoded once and
    every epoch reads the tensor.

    Args:
        imageset: The images.
        size: Output side; ``None`` means an array set's native size (required for file sets).
        num_workers: Decoding threads for file sets (Pillow releases the GIL while decoding);
            0 decodes in this thread, a negative value picks one per core up to 8.
        into: A file to hold the tensor instead of memory (memory-mapped: the operating system
            pages in the batches being read), for sets larger than memory allows. The caller
            owns the file.

    Raises:
        ValueError: ``size`` is ``None`` for a set of files.
        BadImageError: A file cannot be decoded.
    """
    if size is None:
        size = imageset.native_size
        if size is None:
            raise ValueError("preload needs a size for a set of image files")
    n = len(imageset)
    if n == 0:
        return torch.zeros((0, 3, size, size), dtype=torch.uint8)
    images = imageset.images
    if isinstance(images, np.ndarray) and images.shape[1:3] == (size, size):
        arr = images if images.ndim == 4 else np.repeat(images[..., None], 3, axis=3)
        return torch.from_numpy(np.ascontiguousarray(arr.transpose(0, 3, 1, 2)))
    workers = default_workers() if num_workers < 0 else num_workers
    shape = (n, 3, size, size)
    if into is None:
        out = torch.empty(shape, dtype=torch.uint8)
    else:
        out = torch.from_file(str(into), shared=True, size=n * 3 * size * size, dtype=torch.uint8).view(shape)

    def fill(i: int) -> None:
        out[i] = _chw(imageset.get_rgb(i, size))

    map_with_progress(
        fill, range(n), description=f"Decoding {imageset.name}", num_workers=workers
    )
    return out

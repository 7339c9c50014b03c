"""Image files named on the command line: found in folders, decoded as training stored them."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from ..errors import DataError, HeadstartError
from .decode import IMAGE_EXTENSIONS, decode_file, to_square_uint8
from .sources import ignored_message


def gather_image_files(inputs: Sequence[str | Path], ignored: dict[str, list[str]] | None = None) -> list[Path]:
    """Image files named or found (recursively) in the folders given; other files found in a
    folder go to ``ignored[folder]``, to be reported as a count."""
    paths: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(q for q in p.rglob("*") if q.is_file() and not any(part.startswith(".") for part in q.relative_to(p).parts[:-1]))
            is_image = [q.suffix.lower() in IMAGE_EXTENSIONS and not q.name.startswith(".") for q in found]
            paths += [q for q, keep in zip(found, is_image) if keep]
            if ignored is not None:
                ignored[str(p)] = [str(q) for q, keep in zip(found, is_image) if not keep]
        elif p.exists():
            paths.append(p)
        else:
            raise DataError(f"{p} does not exist; give image files or folders of images")
    if not paths:
        others = "; ".join(m for m in (ignored_message(v, k) for k, v in (ignored or {}).items()) if m)
        raise DataError(
            f"no images found in {', '.join(map(str, inputs))} (looked for {', '.join(IMAGE_EXTENSIONS)})"
            + (f"; {others}" if others else "")
        )
    return paths


def load_square_files(
    paths: Iterable[str | Path], size: int, warned: list[tuple[str, str]] | None = None
) -> tuple[list[Path], torch.Tensor, list[tuple[str, str]]]:
    """Decode image files into uint8 (N, 3, size, size) the way training stored them (shorter
    side resized, centre crop); unreadable files come back as ``(path, reason)``, and files that
    decoded with warnings are added to ``warned``."""
    ok, arrays, bad = [], [], []
    for p in paths:
        try:
            decoded = decode_file(p)
            arrays.append(to_square_uint8(decoded.image, size))
            ok.append(Path(p))
            if decoded.warnings and warned is not None:
                warned.append((str(p), "; ".join(decoded.warnings)))
        except HeadstartError as exc:
            bad.append((str(p), str(getattr(exc, "reason", exc))))
    x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous() if arrays else torch.zeros(0, 3, size, size, dtype=torch.uint8)
    return ok, x, bad

"""Fixtures shared by the unlabeled-image tests."""

from __future__ import annotations

import pytest
from PIL import Image, ImageOps


@pytest.fixture(scope="module")
def big_pool(shapes_folder, tmp_path_factory):
    """90 unlabeled images (each labeled shape mirrored, flipped and both): three per label."""
    out = tmp_path_factory.mktemp("bigpool")
    for path in sorted(p for p in shapes_folder.rglob("*") if p.is_file()):
        try:
            with Image.open(path) as img:
                rgb = img.convert("RGB")
        except OSError:
            continue
        for k, im in enumerate((ImageOps.mirror(rgb), ImageOps.flip(rgb), ImageOps.flip(ImageOps.mirror(rgb)))):
            im.save(out / f"{path.parent.name}-{path.stem}-{k}.png")
    return out

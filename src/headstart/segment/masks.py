"""Segmentation data: images with a class index per pixel, checked before anything trains.

Two folder forms are read (``load_masks`` tells them apart):

- **images + masks**: ``DATA/images/*`` and ``DATA/masks/*.png`` with the same file stems. A
  mask is a PNG of class indices, one per pixel: a grey-level (mode ``L``) image whose values
  are the indices, or a palette (mode ``P``) image whose palette indices are (the colours are
  only for people looking at it). 255 marks pixels to ignore (object edges, as in PASCAL VOC).
  The class names are ``DATA/classes.txt`` (one per line, line i is index i) or
  ``DATA/classes.yaml`` (a list, or ``{index: name}``); without either the classes are
  ``class0``, ``class1`` … up to the largest index found.
- **cut-outs**: a folder of images with transparency (RGBA or LA PNGs: icons, product shots):
  the alpha channel is the mask (opaque = ``foreground``, transparent = ``background``), and
  each image is laid on a background of its own — a smooth random colour field drawn from the
  file's hash, so the same file always gets the same background and no two images share one.
  A model that only learned "not white" would learn nothing here.

Every pair is checked: a missing partner, an image and mask of different sizes, a mask that is
not a PNG of indices, values beyond the classes — each is an error that names the file and the
fix, raised before any training, all problems at once (up to a screenful).

Images and masks are held at one square training size (the image resized with antialiasing,
the mask with nearest neighbour, so a label is never blended into a class that is not there);
the original sizes are kept, as predictions are given back at them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from ..data.decode import IMAGE_EXTENSIONS, load_image
from ..errors import BadImageError, ConfigError

IGNORE = 255
"""The mask value of pixels that count for nothing: not in the loss, not in any metric."""
MAX_ERRORS = 20
"""Problems listed in one error before the rest are counted."""
CUTOUT_CLASSES = ["background", "foreground"]
ALPHA_THRESHOLD = 128
"""Alpha at or above this (of 255) is foreground: the half-way point, so antialiased edges split
evenly between the two classes."""


@dataclass
class MaskSet:
    """Images and their masks at ``size`` × ``size``.

    ``images`` (N, 3, S, S) uint8, ``masks`` (N, S, S) uint8 class indices (255: ignore),
    ``classes`` the names, ``paths`` the image files, ``sizes`` their original (width, height).
    """

    images: torch.Tensor
    masks: torch.Tensor
    classes: list[str]
    paths: list[Path]
    sizes: list[tuple[int, int]]
    form: str  # "masks" | "cutouts"
    name: str
    notes: list[str] = field(default_factory=list)
    mask_files: list[Path] = field(default_factory=list)  # each image's mask file (the "masks" form)

    def original(self, i: int) -> tuple[Image.Image, np.ndarray]:
        """Image ``i`` and its mask at their original size (read again from the files)."""
        if self.form == "masks":
            return read_pair(self.paths[i], self.mask_files[i], num_classes=self.num_classes)
        return read_cutout(self.paths[i])

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def subset(self, idx: np.ndarray | list[int]) -> "MaskSet":
        idx = [int(i) for i in idx]
        t = torch.as_tensor(idx, dtype=torch.long)
        return MaskSet(self.images[t], self.masks[t], list(self.classes), [self.paths[i] for i in idx], [self.sizes[i] for i in idx],
                       self.form, self.name, list(self.notes), [self.mask_files[i] for i in idx] if self.mask_files else [])

    def pixel_shares(self) -> list[float]:
        """Each class's share of the labelled (not ignored) pixels."""
        counts = torch.bincount(self.masks.flatten().long(), minlength=256)[: self.num_classes].double()
        return (counts / counts.sum().clamp_min(1)).tolist()


def form_of(data: str | Path) -> str:
    """``masks`` (``DATA/images`` + ``DATA/masks``), ``cutouts`` (a folder of images with
    transparency) or a clear error saying what a segmentation folder holds."""
    root = Path(data)
    if not root.is_dir():
        raise ConfigError(f"{data} is not a folder; segmentation data is a folder with images/ and masks/ (same file stems, masks as PNGs "
                          "of class indices), or a folder of PNGs with transparency (the alpha is the mask)")
    if (root / "images").is_dir() and (root / "masks").is_dir():
        return "masks"
    if (root / "images").is_dir() or (root / "masks").is_dir():
        missing = "masks" if (root / "images").is_dir() else "images"
        raise ConfigError(f"{root} has {'images' if missing == 'masks' else 'masks'}/ but no {missing}/: put each image's mask in "
                          f"{root / 'masks'} under the image's file stem, as a PNG of class indices")
    return "cutouts"


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def image_sizes(data: str | Path) -> list[tuple[int, int]]:
    """The (width, height) of each image of a segmentation folder, upright, from the file headers
    alone (nothing decoded): what the default training size is chosen from. Unreadable files
    are left out here; loading names them."""
    root = Path(data)
    files = _image_files(root / "images") if form_of(root) == "masks" else _image_files(root)
    sizes = []
    for p in files:
        try:
            with Image.open(p) as img:
                w, h = img.size
                turned = img.getexif().get(0x0112, 1) in (5, 6, 7, 8)
        except Exception:  # noqa: BLE001 — named when the folder is loaded
            continue
        sizes.append((h, w) if turned else (w, h))
    return sizes


def read_classes(root: Path) -> list[str] | None:
    """The class names from ``classes.txt`` or ``classes.yaml``/``.yml``; None without either."""
    txt = root / "classes.txt"
    if txt.is_file():
        names = [line.strip() for line in txt.read_text(encoding="utf-8").splitlines()]
        while names and not names[-1]:
            names.pop()
        if not names or any(not n for n in names):
            raise ConfigError(f"{txt}: one class name per line, line i naming class index i, no blank lines")
        return names
    for name in ("classes.yaml", "classes.yml"):
        path = root / name
        if path.is_file():
            import yaml

            value = yaml.safe_load(path.read_text(encoding="utf-8"))
            if isinstance(value, dict) and "names" in value:
                value = value["names"]
            if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
                return list(value)
            if isinstance(value, dict) and value and all(isinstance(k, int) for k in value):
                if sorted(value) != list(range(len(value))):
                    raise ConfigError(f"{path}: the class indices must be 0..{len(value) - 1} with none missing, got {sorted(value)}")
                return [str(value[i]) for i in range(len(value))]
            raise ConfigError(f"{path}: give a list of class names (index = position), or a mapping {{0: name, 1: name, ...}}")
    return None


def read_mask(path: Path) -> np.ndarray:
    """A mask file's class indices (H, W) uint8, or a :class:`ConfigError` naming the file."""
    try:
        with Image.open(path) as img:
            img.load()
            img = ImageOps.exif_transpose(img)
            mode = img.mode
            if mode in ("L", "P"):
                return np.asarray(img, dtype=np.uint8).copy()
            if mode in ("I;16", "I;16L", "I;16B", "I", "1"):
                arr = np.asarray(img)
                if arr.size and int(arr.max()) > 255:
                    raise ConfigError(f"{path}: mask values up to {int(arr.max())}; a mask holds class indices 0..254 (255 = ignore)")
                return arr.astype(np.uint8)
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 — any decoder failure is a bad mask file
        raise ConfigError(f"{path}: cannot read this mask ({exc}); a mask is a PNG of class indices") from None
    raise ConfigError(f"{path}: a {mode} image; a mask is a PNG of class indices, one per pixel (grey-level L or palette P), not colours: "
                      "save it with the indices as pixel values")


def read_pair(image_path: Path, mask_file: Path, *, num_classes: int | None) -> tuple[Image.Image, np.ndarray]:
    """An image (upright RGB) and its mask at their original size, checked: same size, values
    below ``num_classes`` (or ``IGNORE``)."""
    image = load_image(image_path)
    mask = read_mask(mask_file)
    if mask.shape != (image.height, image.width):
        raise ConfigError(f"{mask_file}: {mask.shape[1]}×{mask.shape[0]} px, its image {image_path.name} is {image.width}×{image.height}; "
                          "a mask has its image's size")
    if num_classes is not None:
        found = np.unique(mask)
        bad = [int(v) for v in found if v != IGNORE and v >= num_classes]
        if bad:
            raise ConfigError(f"{mask_file}: values {bad[:8]} but {num_classes} classes are named (0..{num_classes - 1}; 255 = ignore); "
                              "add the names to classes.txt or fix the mask")
    return image, mask


def read_cutout(path: Path) -> tuple[Image.Image, np.ndarray]:
    """A cut-out on its own background and its alpha mask, at the original size, checked."""
    raw = path.read_bytes()
    try:
        with Image.open(path) as img:
            img.load()
            img = ImageOps.exif_transpose(img)
            has_alpha = img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info
            if not has_alpha:
                raise ConfigError(f"{path}: a {img.mode} image without transparency; in a folder of cut-outs every image needs an alpha "
                                  "channel (or give images/ and masks/ folders)")
            image, mask = composite(img, raw)
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 — a file Pillow cannot open
        raise ConfigError(f"{path}: cannot read this image ({exc})") from None
    if mask.min() == mask.max():
        raise ConfigError(f"{path}: fully {'opaque' if mask.max() else 'transparent'}; a cut-out needs both foreground and background")
    return image, mask


def _resize_pair(image: Image.Image, mask: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    img = np.asarray(image.resize((size, size), resample=Image.Resampling.BILINEAR, reducing_gap=None), dtype=np.uint8)
    m = np.asarray(Image.fromarray(mask).resize((size, size), resample=Image.Resampling.NEAREST), dtype=np.uint8)
    return img, m


def _errors(problems: list[str], root: Path, hint: str) -> ConfigError:
    shown = problems[:MAX_ERRORS]
    more = f"\n  … and {len(problems) - MAX_ERRORS} more" if len(problems) > MAX_ERRORS else ""
    return ConfigError(f"{root}: {len(problems)} problem(s) with the segmentation data:\n  " + "\n  ".join(shown) + more + f"\n{hint}")


def load_masks(data: str | Path, *, size: int, classes: list[str] | None = None) -> MaskSet:
    """The images and masks of ``data`` (either form, see the module) at ``size`` px. With
    ``classes`` (a trained run's), the folder's own names must match them."""
    root = Path(data)
    form = form_of(root)
    if form == "masks":
        ms = _load_pairs(root, size)
    else:
        ms = _load_cutouts(root, size)
    if classes is not None and ms.classes != list(classes):
        raise ConfigError(f"{root}: classes {ms.classes} differ from the run's {list(classes)}; give data labelled with the run's classes "
                          "(classes.txt in the same order)")
    return ms


def _load_pairs(root: Path, size: int) -> MaskSet:
    images = _image_files(root / "images")
    masks = {p.stem: p for p in _image_files(root / "masks")}
    stems: dict[str, Path] = {}
    problems: list[str] = []
    for p in images:
        if p.stem in stems:
            problems.append(f"{p}: two images share the stem {p.stem!r} ({stems[p.stem].name}); their masks would be the same file")
        stems[p.stem] = p
    for stem, p in stems.items():
        if stem not in masks:
            problems.append(f"{p}: no mask (expected {root / 'masks' / (stem + '.png')})")
    for stem, m in masks.items():
        if stem not in stems:
            problems.append(f"{m}: a mask without an image (expected an image named {stem}.* in {root / 'images'})")
    names = read_classes(root)
    pixels, labels, sizes, paths, mask_files = [], [], [], [], []
    top = -1
    for stem, p in stems.items():
        if stem not in masks:
            continue
        try:
            image, mask = read_pair(p, masks[stem], num_classes=None if names is None else len(names))
        except (BadImageError, ConfigError) as exc:
            problems.append(f"{p}: {exc.reason}" if isinstance(exc, BadImageError) else str(exc))
            continue
        found = mask[mask != IGNORE]
        top = max(top, int(found.max()) if found.size else -1)
        img, m = _resize_pair(image, mask, size)
        pixels.append(img)
        labels.append(m)
        sizes.append((image.width, image.height))
        paths.append(p)
        mask_files.append(masks[stem])
    if problems:
        raise _errors(problems, root, "Fix or remove these files; nothing has been trained yet.")
    if not paths:
        raise ConfigError(f"{root}: no image/mask pairs found (images in {root / 'images'}, masks as PNGs in {root / 'masks'})")
    notes = []
    if names is None:
        names = [f"class{i}" for i in range(max(top, 1) + 1)]
        notes.append(f"no classes.txt: {len(names)} classes named {names[0]}..{names[-1]} from the largest mask value")
    if len(names) < 2:
        raise ConfigError(f"{root}: {len(names)} class; segmentation needs at least two (e.g. background and object)")
    return MaskSet(torch.from_numpy(np.stack(pixels)).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(np.stack(labels)), names, paths,
                   sizes, "masks", root.name, notes, mask_files)


def background(seed_bytes: bytes, width: int, height: int) -> np.ndarray:
    """A smooth random colour field (H, W, 3) uint8 drawn from ``seed_bytes``: a 4 × 4 grid of
    random colours interpolated bicubically, plus fine noise — something between a gradient and
    a texture, different for every seed."""
    seed = int.from_bytes(hashlib.sha256(seed_bytes).digest()[:8], "little")
    rng = np.random.default_rng(seed)
    grid = rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
    field_ = np.asarray(Image.fromarray(grid).resize((width, height), resample=Image.Resampling.BICUBIC), dtype=np.float64)
    noise = rng.normal(0, 12, size=(height, width, 1))
    return np.clip(field_ + noise, 0, 255).astype(np.uint8)


def composite(rgba: Image.Image, seed_bytes: bytes) -> tuple[Image.Image, np.ndarray]:
    """A cut-out laid on its own background, and its mask (1 where alpha ≥ 128)."""
    rgba = rgba.convert("RGBA")
    arr = np.asarray(rgba, dtype=np.float64)
    alpha = arr[..., 3:] / 255.0
    bg = background(seed_bytes, rgba.width, rgba.height).astype(np.float64)
    rgb = np.clip(np.rint(arr[..., :3] * alpha + bg * (1 - alpha)), 0, 255).astype(np.uint8)
    mask = (arr[..., 3] >= ALPHA_THRESHOLD).astype(np.uint8)
    return Image.fromarray(rgb, mode="RGB"), mask


def _load_cutouts(root: Path, size: int) -> MaskSet:
    files = _image_files(root)
    if not files:
        raise ConfigError(f"{root}: no images; segmentation data is a folder with images/ and masks/, or a folder of PNGs with transparency")
    problems, pixels, labels, sizes, paths = [], [], [], [], []
    for p in files:
        try:
            image, mask = read_cutout(p)
        except ConfigError as exc:
            problems.append(str(exc))
            continue
        img, m = _resize_pair(image, mask, size)
        pixels.append(img)
        labels.append(m)
        sizes.append((image.width, image.height))
        paths.append(p)
    if problems:
        raise _errors(problems, root, "Fix or remove these files; nothing has been trained yet.")
    return MaskSet(torch.from_numpy(np.stack(pixels)).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(np.stack(labels)),
                   list(CUTOUT_CLASSES), paths, sizes, "cutouts", root.name,
                   ["the alpha channel is the mask: opaque = foreground; each image laid on a background of its own"])

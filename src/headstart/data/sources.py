"""Where image sets come from: class folders, CSV files, unlabeled folders and built-in sets.

Every loader returns an :class:`~headstart.data.imageset.ImageSet` and reports problems as
:class:`~headstart.errors.DataError` messages that name the folder or file and the fix. Files are
checked up front (each one fully decoded) because a broken JPEG found in epoch 3 after an hour of
training is the worst time to find it; ``validate=False`` skips that check for sets already known
to be clean.
"""

from __future__ import annotations

import csv
import gzip
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from headstart.data._progress import default_workers, map_with_progress
from headstart.data.decode import IMAGE_EXTENSIONS, decode_file, has_image_extension
from headstart.data.imageset import FOLDER_LAYOUT, UNLABELED, ImageSet
from headstart.data.splits import stratified_split
from headstart.errors import BadImageError, DataError
from headstart.registry import Registry

BuiltinLoader = Callable[..., ImageSet]

BUILTIN_DATASETS: Registry[BuiltinLoader] = Registry("dataset")
"""Built-in datasets: name -> ``loader(split=..., root=...)`` returning an ImageSet."""


def is_builtin(spec: str) -> bool:
    """Whether ``spec`` names a built-in set (``fashion-mnist``, ``fashion-mnist:/dir``, ``digits``)."""
    return spec.split(":", 1)[0] in BUILTIN_DATASETS


SPLITS = ("train", "test")

ON_BAD_IMAGE = ("skip", "error")
"""What to do with a file that has an image extension but does not decode."""

_MAX_LISTED = 10
_IGNORED_DIRS = frozenset({"__MACOSX"})


# ---------------------------------------------------------------------------------------------
# Walking folders and checking files


def _visible(name: str) -> bool:
    return not name.startswith(".") and name not in _IGNORED_DIRS


def _images_under(folder: str, ignored: list[str] | None = None) -> list[str]:
    """Image files anywhere under ``folder``, hidden files and folders skipped, in sorted order;
    every other file met on the way is appended to ``ignored`` (so it can be reported)."""
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if _visible(d))
        for name in sorted(filenames):
            if _visible(name) and has_image_extension(name):
                found.append(os.path.join(dirpath, name))
            elif ignored is not None:
                ignored.append(os.path.join(dirpath, name))
    return found


def ignored_kinds(paths: Sequence[str]) -> str:
    """``".txt ×2, .svg, (no extension)"``: what kinds of files were left out, most common first.
    Hidden files (``.DS_Store``, ``._photo.jpg``) are named as hidden."""
    kinds: dict[str, int] = {}
    for p in paths:
        name = os.path.basename(p)
        ext = os.path.splitext(name)[1].lower()
        if not _visible(name):
            kind = f"hidden {name}" if not ext or ext == name.lower() else f"hidden {ext}"
        else:
            kind = ext or "(no extension)"
        kinds[kind] = kinds.get(kind, 0) + 1
    ordered = sorted(kinds.items(), key=lambda kv: (-kv[1], kv[0].startswith(("(", "hidden")), kv[0]))
    return ", ".join(k if n == 1 else f"{k} ×{n}" for k, n in ordered)


def ignored_message(paths: Sequence[str], where: str) -> str | None:
    """The one line that reports the files of ``where`` that are not images headstart decodes."""
    if not paths:
        return None
    return (
        f"ignored {len(paths)} file(s) in {where} that are not images headstart decodes: "
        f"{ignored_kinds(paths)} (it reads {' '.join(IMAGE_EXTENSIONS)}; convert others, e.g. "
        "SVG or HEIC, to PNG or JPEG to use them)"
    )


def _check_on_bad_image(on_bad_image: str) -> None:
    if on_bad_image not in ON_BAD_IMAGE:
        raise ValueError(f"on_bad_image must be one of {ON_BAD_IMAGE}, got {on_bad_image!r}")


@dataclass
class _Checked:
    """What checking one file found: why it cannot be used (``None``: it can), its content
    digest, and the decoder's warnings about it."""

    reason: str | None
    digest: str | None = None
    warnings: tuple[str, ...] = ()


def _check_decodes(path: str) -> _Checked:
    try:
        decoded = decode_file(path)
    except BadImageError as exc:
        return _Checked(exc.reason)
    return _Checked(None, decoded.digest, tuple(decoded.warnings))


def _check_exists(path: str) -> _Checked:
    return _Checked(None if os.path.isfile(path) else "file not found")


@dataclass
class _Screened:
    good: np.ndarray
    bad: list[tuple[str, str]]
    digests: list[str] | None
    warned: list[tuple[str, str]]

    def kept(self, paths: Sequence[str]) -> tuple[list[str], list[str] | None]:
        idx = np.flatnonzero(self.good).tolist()
        return [paths[i] for i in idx], None if self.digests is None else [self.digests[i] for i in idx]


def _screen(
    paths: Sequence[str], *, on_bad_image: str, validate: bool, where: str
) -> _Screened:
    """Find the unusable files among ``paths``.

    With ``validate`` every file is decoded (in threads, with a progress bar for large sets),
    which also gives each file's content digest and the decoder's warnings; without it only
    existence is checked.

    Returns:
        A boolean mask of usable files, the ``(path, reason)`` list of the others, the digests
        (``None`` without ``validate``) and ``(path, warnings)`` of usable files that warned.

    Raises:
        DataError: ``on_bad_image == "error"`` and some file is unusable; all of them are listed.
    """
    check = _check_decodes if validate else _check_exists
    results = map_with_progress(
        check,
        list(paths),
        description=f"Checking images in {where}",
        num_workers=default_workers() if validate else 0,
    )
    reasons = [r.reason for r in results]
    bad = [(p, r) for p, r in zip(paths, reasons) if r is not None]
    if bad and on_bad_image == "error":
        listed = "\n".join(f"  {p}: {r}" for p, r in bad[:_MAX_LISTED])
        more = f"\n  ... and {len(bad) - _MAX_LISTED} more" if len(bad) > _MAX_LISTED else ""
        raise DataError(
            f"{len(bad)} of {len(paths)} image files in {where} cannot be used:\n{listed}{more}\n"
            "Fix or remove them, or pass --on-bad-image skip (on_bad_image='skip') to leave "
            "them out."
        )
    good = np.array([r is None for r in reasons], dtype=bool)
    digests = [r.digest or "" for r in results] if validate else None
    warned = [(p, "; ".join(r.warnings)) for p, r in zip(paths, results) if r.reason is None and r.warnings]
    return _Screened(good, bad, digests, warned)


def _refuse_all_bad_classes(
    classes: list[str],
    labels: np.ndarray,
    good: np.ndarray,
    bad: list[tuple[str, str]],
    paths: Sequence[str],
    describe: Callable[[str], str],
) -> None:
    """Raise when every file of some class was unusable, so the class would silently vanish."""
    reason_of = dict(bad)
    for c, cls in enumerate(classes):
        members = np.flatnonzero(labels == c)
        if len(members) and not good[members].any():
            first = paths[int(members[0])]
            raise DataError(
                f"all {len(members)} image files in {describe(cls)} cannot be used "
                f"(e.g. {first}: {reason_of.get(first, 'unreadable')}); fix them or remove "
                "that class"
            )


# ---------------------------------------------------------------------------------------------
# Folders and CSV files


def load_folder(
    root: str | os.PathLike[str], on_bad_image: str = "skip", validate: bool = True
) -> ImageSet:
    """Load a class-per-folder dataset: ``root/<class>/<image>``.

    The immediate subfolders of ``root`` are the classes, sorted by name (so label numbers do not
    depend on the file system's order); images may sit in nested folders inside a class folder.
    Hidden files and folders are ignored, and so are files without an image extension
    (``README.txt``, ``Thumbs.db``); a file *with* an image extension that does not decode is a
    bad image.

    Args:
        root: The dataset folder.
        on_bad_image: ``"skip"`` leaves bad files out (listed in ``skipped``); ``"error"`` raises.
        validate: Decode every file now. ``False`` only checks the layout, for sets known to be
            clean (a bad file then fails when it is first read).

    Raises:
        DataError: ``root`` is missing or not a folder, images lie directly in ``root``, there are
            no class folders, a class folder holds no images or only bad ones, or (with
            ``on_bad_image="error"``) some image is bad.
    """
    _check_on_bad_image(on_bad_image)
    root_str = os.fspath(root)
    if not os.path.exists(root_str):
        raise DataError(f"dataset folder {root_str} does not exist")
    if not os.path.isdir(root_str):
        raise DataError(f"{root_str} is not a folder; expected the layout {FOLDER_LAYOUT}")

    entries = sorted(os.scandir(root_str), key=lambda e: e.name)
    loose = [
        e.name
        for e in entries
        if _visible(e.name) and e.is_file() and has_image_extension(e.name)
    ]
    if loose:
        example = ", ".join(loose[:3]) + (", ..." if len(loose) > 3 else "")
        raise DataError(
            f"found {len(loose)} image(s) directly in {root_str} ({example}); headstart expects "
            f"one subfolder per class with the images inside: {FOLDER_LAYOUT}. Move each image "
            "into a folder named after its class (images without classes go in a folder given "
            "with --unlabeled)."
        )
    classes = [e.name for e in entries if _visible(e.name) and e.is_dir()]
    if not classes:
        raise DataError(f"no class folders in {root_str}; expected the layout {FOLDER_LAYOUT}")

    paths: list[str] = []
    labels: list[int] = []
    ignored = [e.path for e in entries if e.is_file() and not (_visible(e.name) and has_image_extension(e.name))]
    for c, cls in enumerate(classes):
        here: list[str] = []
        found = _images_under(os.path.join(root_str, cls), here)
        if not found:
            holds = f"; it holds {len(here)} other file(s): {ignored_kinds(here)}" if here else ""
            raise DataError(
                f"class folder {os.path.join(root_str, cls)} has no images (looked for "
                f"{' '.join(IMAGE_EXTENSIONS)}{holds}); add images to it or remove it"
            )
        ignored.extend(here)
        paths.extend(found)
        labels.extend([c] * len(found))

    label_arr = np.asarray(labels, dtype=np.int64)
    sc = _screen(paths, on_bad_image=on_bad_image, validate=validate, where=root_str)
    _refuse_all_bad_classes(
        classes,
        label_arr,
        sc.good,
        sc.bad,
        paths,
        lambda cls: f"class folder {os.path.join(root_str, cls)}",
    )
    images, digests = sc.kept(paths)
    return ImageSet(
        images=images,
        labels=label_arr[sc.good],
        classes=classes,
        name=root_str,
        skipped=sc.bad,
        root=root_str,
        digests=digests,
        warned=sc.warned,
        ignored=ignored,
    )


def load_csv(
    path: str | os.PathLike[str],
    on_bad_image: str = "skip",
    root: str | os.PathLike[str] | None = None,
    validate: bool = True,
) -> ImageSet:
    """Load a dataset listed in a CSV file with a ``path,label`` header.

    Relative paths are resolved against ``root`` when given, else against the CSV file's own
    folder, so a dataset folder with its CSV inside can be moved as a whole. Classes are the
    distinct labels, sorted. Other columns are ignored.

    Args:
        path: The CSV file (UTF-8; a byte-order mark is accepted).
        on_bad_image: ``"skip"`` or ``"error"``, as in :func:`load_folder`; a listed file that
            does not exist counts as a bad image with reason "file not found".
        root: Folder that relative paths are resolved against.
        validate: Decode every file now (otherwise only check that it exists).

    Raises:
        DataError: The CSV is missing, lacks the ``path`` or ``label`` column, has a row with an
            empty path or label, lists no images, or a class has only bad images.
    """
    _check_on_bad_image(on_bad_image)
    csv_path = os.fspath(path)
    if not os.path.isfile(csv_path):
        raise DataError(f"CSV file {csv_path} does not exist")
    base = os.fspath(root) if root is not None else os.path.dirname(os.path.abspath(csv_path))
    expected = "expected a header row 'path,label' (one image path and its class per row)"

    rows: list[tuple[str, str]] = []
    with open(csv_path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            raise DataError(f"CSV file {csv_path} is empty; {expected}")
        columns = [h.strip().lower() for h in header]
        missing = [c for c in ("path", "label") if c not in columns]
        if missing:
            raise DataError(
                f"CSV file {csv_path} has no {' or '.join(repr(m) for m in missing)} column "
                f"(found header {','.join(header)!r}); {expected}"
            )
        ip, il = columns.index("path"), columns.index("label")
        for line_no, row in enumerate(reader, start=2):
            if not any(cell.strip() for cell in row):
                continue
            p = row[ip].strip() if ip < len(row) else ""
            lab = row[il].strip() if il < len(row) else ""
            if not p or not lab:
                raise DataError(
                    f"CSV file {csv_path}, line {line_no}: empty {'path' if not p else 'label'}; "
                    "every row needs an image path and its class"
                )
            rows.append((p, lab))
    if not rows:
        raise DataError(f"CSV file {csv_path} lists no images; {expected}")

    classes = sorted({lab for _, lab in rows})
    index = {cls: i for i, cls in enumerate(classes)}
    paths = [
        os.path.normpath(os.path.join(base, os.path.expanduser(p))) for p, _ in rows
    ]
    label_arr = np.asarray([index[lab] for _, lab in rows], dtype=np.int64)
    sc = _screen(paths, on_bad_image=on_bad_image, validate=validate, where=csv_path)
    _refuse_all_bad_classes(
        classes, label_arr, sc.good, sc.bad, paths, lambda cls: f"class {cls!r} of {csv_path}"
    )
    images, digests = sc.kept(paths)
    return ImageSet(
        images=images,
        labels=label_arr[sc.good],
        classes=classes,
        name=csv_path,
        skipped=sc.bad,
        digests=digests,
        warned=sc.warned,
    )


def load_unlabeled(
    root: str | os.PathLike[str], on_bad_image: str = "skip", validate: bool = True
) -> ImageSet:
    """Load every image under ``root`` (any depth) as unlabeled (label ``-1``, no classes).

    Unlabeled pools feed pseudo-labeling, Noisy Student, distillation and self-supervised
    pretraining, where folder structure carries no meaning, so all subfolders are searched.

    Raises:
        DataError: ``root`` is missing, holds no images, holds only bad ones, or (with
            ``on_bad_image="error"``) some image is bad.
    """
    _check_on_bad_image(on_bad_image)
    root_str = os.fspath(root)
    if not os.path.isdir(root_str):
        raise DataError(f"unlabeled image folder {root_str} does not exist or is not a folder")
    ignored: list[str] = []
    paths = _images_under(root_str, ignored)
    if not paths:
        raise DataError(
            f"no images in {root_str} or its subfolders (looked for {' '.join(IMAGE_EXTENSIONS)})"
            + (f"; {ignored_message(ignored, root_str)}" if ignored else "")
        )
    sc = _screen(paths, on_bad_image=on_bad_image, validate=validate, where=root_str)
    if not sc.good.any():
        raise DataError(
            f"none of the {len(paths)} image files in {root_str} can be used "
            f"(e.g. {sc.bad[0][0]}: {sc.bad[0][1]})"
        )
    images, digests = sc.kept(paths)
    return ImageSet(
        images=images,
        labels=np.full(len(images), UNLABELED, dtype=np.int64),
        classes=[],
        name=root_str,
        skipped=sc.bad,
        digests=digests,
        warned=sc.warned,
        ignored=ignored,
    )


# ---------------------------------------------------------------------------------------------
# Built-in datasets


def _check_split(split: str, dataset: str) -> None:
    if split not in SPLITS:
        raise DataError(f"{dataset} has the splits {', '.join(SPLITS)}; got {split!r}")


IDX_MAGIC_IMAGES = 0x00000803
"""IDX magic number of a uint8 array with 3 dimensions (images, rows, columns)."""
IDX_MAGIC_LABELS = 0x00000801
"""IDX magic number of a uint8 array with 1 dimension (labels)."""


def read_idx(path: str | os.PathLike[str], *, expected_magic: int | None = None) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzipped or not, into a uint8 array.

    The format is a 4-byte big-endian magic number (two zero bytes, a type code, 0x08 for uint8,
    and the number of dimensions), one big-endian uint32 per dimension, then the raw values.

    Args:
        path: The ``.gz`` or plain IDX file.
        expected_magic: Refuse the file unless its magic number is this one (so an images file
            passed where labels belong is caught).

    Raises:
        DataError: The file is not an IDX file of uint8 values, has the wrong magic number, or is
            shorter than its header says.
    """
    p = os.fspath(path)
    try:
        opener = gzip.open if p.endswith(".gz") else open
        with opener(p, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"cannot read IDX file {p}: {exc}") from None
    if len(raw) < 4:
        raise DataError(f"{p} is not an IDX file: only {len(raw)} bytes")
    magic = int.from_bytes(raw[:4], "big")
    if expected_magic is not None and magic != expected_magic:
        raise DataError(
            f"{p} is not the expected IDX file: magic number 0x{magic:08x}, expected "
            f"0x{expected_magic:08x}"
        )
    if raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{p} is not an IDX file of uint8 values (magic number 0x{magic:08x})")
    ndim = raw[3]
    header_end = 4 + 4 * ndim
    if len(raw) < header_end:
        raise DataError(f"{p} is truncated inside its IDX header")
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    expected_bytes = int(np.prod(dims, dtype=np.int64))
    body = raw[header_end:]
    if len(body) != expected_bytes:
        raise DataError(
            f"{p} is truncated or corrupt: its header promises {expected_bytes:,} values of shape "
            f"{tuple(dims)}, the file holds {len(body):,}"
        )
    return np.frombuffer(body, dtype=np.uint8).reshape(dims).copy()


FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
"""Where the Debian package ``dataset-fashion-mnist`` installs the IDX files."""
FASHION_MNIST_ENV = "HEADSTART_FASHION_MNIST"
"""Environment variable naming another Fashion-MNIST folder."""
FASHION_MNIST_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
_FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _find_idx(folder: str, stem: str) -> str | None:
    for candidate in (os.path.join(folder, stem + ".gz"), os.path.join(folder, stem)):
        if os.path.isfile(candidate):
            return candidate
    return None


@BUILTIN_DATASETS.register("fashion-mnist")
def fashion_mnist(split: str = "train", root: str | None = None) -> ImageSet:
    """Fashion-MNIST: 70,000 28x28 grayscale clothing images in 10 classes (60,000 + 10,000).

    It installs offline (Debian ``dataset-fashion-mnist``) and is small enough to train on a CPU,
    which makes it the demo and benchmark set. The folder is ``root`` when given, else
    ``$HEADSTART_FASHION_MNIST``, else ``/usr/share/datasets/fashion-mnist``; it must hold the four
    original IDX files (gzipped or not).

    Raises:
        DataError: The files are missing, not IDX files, or images and labels disagree in count.
    """
    _check_split(split, "fashion-mnist")
    folder = root or os.environ.get(FASHION_MNIST_ENV) or FASHION_MNIST_DIR
    image_stem, label_stem = _FASHION_MNIST_FILES[split]
    image_file = _find_idx(folder, image_stem)
    label_file = _find_idx(folder, label_stem)
    if image_file is None or label_file is None:
        missing = image_stem if image_file is None else label_stem
        raise DataError(
            f"Fashion-MNIST not found: {os.path.join(folder, missing)}.gz does not exist. Install "
            "it with `apt-get install dataset-fashion-mnist`, or pass a folder holding the IDX "
            f"files as fashion-mnist:/path/to/dir (or set {FASHION_MNIST_ENV}=/path/to/dir)."
        )
    images = read_idx(image_file, expected_magic=IDX_MAGIC_IMAGES)
    labels = read_idx(label_file, expected_magic=IDX_MAGIC_LABELS).astype(np.int64)
    if len(images) != len(labels):
        raise DataError(
            f"{image_file} holds {len(images)} images but {label_file} holds {len(labels)} labels"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= len(FASHION_MNIST_CLASSES)):
        raise DataError(f"{label_file} has labels outside 0..{len(FASHION_MNIST_CLASSES) - 1}")
    return ImageSet(
        images=images,
        labels=labels,
        classes=list(FASHION_MNIST_CLASSES),
        name="fashion-mnist",
    )


DIGITS_TEST_FRACTION = 0.25
"""Share of each digit held out as the ``digits`` test split."""
DIGITS_SPLIT_SEED = 0
"""Seed of the ``digits`` train/test split; fixed so every run sees the same test images."""


@BUILTIN_DATASETS.register("digits")
def digits(split: str = "train", root: str | None = None) -> ImageSet:
    """scikit-learn's handwritten digits: 1,797 8x8 grayscale images of 0-9, shipped with sklearn.

    The set has no official test split, so headstart defines one: a stratified 25% of each digit
    (``stratified_split(labels, 0.25, seed=0)``), 451 test and 1,346 train images. Pixel values
    0..16 are scaled to 0..255. ``root`` is unused (the data ship inside scikit-learn).
    """
    _check_split(split, "digits")
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.rint(np.asarray(bunch.images, dtype=np.float64) * (255.0 / 16.0))
    images = np.clip(images, 0, 255).astype(np.uint8)
    labels = np.asarray(bunch.target, dtype=np.int64)
    train_idx, test_idx = stratified_split(labels, DIGITS_TEST_FRACTION, DIGITS_SPLIT_SEED)
    idx = train_idx if split == "train" else test_idx
    return ImageSet(
        images=images[idx],
        labels=labels[idx],
        classes=[str(d) for d in range(10)],
        name="digits",
    )


# ---------------------------------------------------------------------------------------------
# One entry point for the CLI


def resolve(spec: str, split: str = "train", on_bad_image: str = "skip") -> ImageSet:
    """Turn a dataset argument into an ImageSet.

    ``spec`` is one of: a built-in name (``fashion-mnist``), a built-in with its folder
    (``fashion-mnist:/data/fmnist``), a ``.csv`` file, or a class-per-folder folder. ``split``
    chooses the built-in split; folders and CSV files are loaded whole (the caller splits them).

    Raises:
        DataError: ``spec`` is none of these; the message lists the built-in names and the
            expected folder layout.
    """
    if spec in BUILTIN_DATASETS:
        return BUILTIN_DATASETS.get(spec)(split=split, root=None)
    name, sep, rest = spec.partition(":")
    if sep and name in BUILTIN_DATASETS and rest:
        return BUILTIN_DATASETS.get(name)(split=split, root=rest)
    path = Path(spec).expanduser()
    if path.is_file() and path.suffix.lower() == ".csv":
        return load_csv(path, on_bad_image=on_bad_image)
    if path.is_dir():
        return load_folder(path, on_bad_image=on_bad_image)
    known = ", ".join(BUILTIN_DATASETS.names())
    what = (
        "is not a CSV file" if path.is_file() else "is not a built-in dataset or an existing path"
    )
    raise DataError(
        f"dataset {spec!r} {what}. Use a built-in name ({known}), name:/path/to/dir for a "
        f"built-in stored elsewhere, a CSV file with a 'path,label' header, or a folder laid out "
        f"as {FOLDER_LAYOUT}."
    )

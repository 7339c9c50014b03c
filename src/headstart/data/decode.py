"""Decoding one image file into RGB, and the square crop that training stores.

Every image that enters headstart passes through :func:`load_image`, so the many ways a file can
be odd (16-bit scans, palette PNGs with a transparent colour, CMYK JPEGs from print workflows,
phone photos stored sideways with an EXIF rotation) are handled once, and every way a file can be
broken (empty, truncated, not an image, a decompression bomb) becomes one
:class:`~headstart.errors.BadImageError` that names the file and says why.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import threading
import warnings
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from headstart.errors import BadImageError, ConfigError

IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".jpg",
    ".jpeg",
    ".png",
    ".bmp",
    ".gif",
    ".tif",
    ".tiff",
    ".webp",
)
"""File endings treated as images (compared case-insensitively)."""

_WHITE = (255, 255, 255)
_ALPHA_MODES = frozenset({"LA", "La", "PA", "RGBA", "RGBa"})
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})

# Pillow reads its pixel limit from a module global at open time; it is swapped out briefly (under
# this lock) so that ``max_pixels`` is the only limit in force and Pillow's own warning never leaks.
_PIXEL_LIMIT_LOCK = threading.Lock()

MAX_PIXELS_ENV = "HEADSTART_MAX_IMAGE_PIXELS"
"""Environment variable with the decompression-bomb limit in pixels (``--max-image-pixels``)."""
DEFAULT_MAX_PIXELS = 89_478_485
"""Pillow's own default limit: a 9,459 x 9,459 image, ~256 MiB of RGBA."""


def max_pixels_limit() -> int:
    """The pixel limit in force: ``$HEADSTART_MAX_IMAGE_PIXELS`` when set, else Pillow's default.

    Read at every call, so ``--max-image-pixels`` (which sets the variable) reaches every decoding
    thread without being passed through each caller.

    Raises:
        ConfigError: The variable is not a positive whole number.
    """
    raw = os.environ.get(MAX_PIXELS_ENV)
    if not raw:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(raw.replace("_", "").replace(",", ""))
    except ValueError:
        value = 0
    if value <= 0:
        raise ConfigError(
            f"{MAX_PIXELS_ENV}={raw!r} is not a positive number of pixels; set it (or "
            "--max-image-pixels) to e.g. 200000000, or unset it for the default of "
            f"{DEFAULT_MAX_PIXELS:,}"
        )
    return value


# Pillow reports odd-but-readable files (a TIFF tag longer than the file, broken EXIF, a palette
# transparency in bytes) with warnings.warn. Those belong to the file being decoded, not on the
# user's terminal, and several files decode at once in threads, where warnings.catch_warnings
# (which swaps module globals) is not safe. So while a thread decodes it holds a list, and one
# process-wide hook puts warnings raised in that thread into it; other warnings pass through.
_DECODING = threading.local()
_HOOK_LOCK = threading.Lock()


def _route_warning(message, category, filename, lineno, file=None, line=None):  # type: ignore[no-untyped-def]
    sink = getattr(_DECODING, "sink", None)
    if sink is not None:
        sink.append(f"{message}")
        return None
    return _route_warning.previous(message, category, filename, lineno, file, line)  # type: ignore[attr-defined]


class _DecodingLogFilter(logging.Filter):
    """Pillow also *logs* about broken files (``logger.error("More samples per pixel than can be
    decoded")``), which Python prints raw when the program has no logging set up. In a decoding
    thread such records go into the file's list (warnings and above) and no further."""

    def filter(self, record: logging.LogRecord) -> bool:
        sink = getattr(_DECODING, "sink", None)
        if sink is None:
            return True
        if record.levelno >= logging.WARNING:
            sink.append(record.getMessage())
        return False


_LOG_FILTER = _DecodingLogFilter()
_LOGGERS_FILTERED = threading.Event()


def _filter_pillow_loggers() -> None:
    """Put the filter on every logger of Pillow's (a logger's filters see only its own records,
    so each plugin's logger needs it). All plugins are imported first, creating their loggers."""
    Image.init()
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if (name == "PIL" or name.startswith("PIL.")) and isinstance(logger, logging.Logger):
            if _LOG_FILTER not in logger.filters:
                logger.addFilter(_LOG_FILTER)


def _install_warning_hook() -> None:
    """Route warnings of decoding threads into their file's list; every warning counts (no
    once-per-location deduplication), so each file gets its own. Re-installed when something
    (a test runner, ``warnings.catch_warnings``) replaced the hook since."""
    if not _LOGGERS_FILTERED.is_set():
        with _HOOK_LOCK:
            if not _LOGGERS_FILTERED.is_set():
                _filter_pillow_loggers()
                _LOGGERS_FILTERED.set()
    with _HOOK_LOCK:
        if warnings.showwarning is not _route_warning:
            _route_warning.previous = warnings.showwarning  # type: ignore[attr-defined]
            warnings.showwarning = _route_warning
        if not warnings.filters or warnings.filters[0][3] is None or warnings.filters[0][3].pattern != _PIL_MODULES:
            warnings.filterwarnings("always", module=_PIL_MODULES)


# Pillow names either its own module or (stacklevel=2) its caller, this module or ImageSet's.
_PIL_MODULES = r"(PIL|headstart\.data\.(decode|imageset))(\..*)?$"


@contextlib.contextmanager
def decoder_warnings() -> Iterator[list[str]]:
    """Collect the warnings raised in this thread while the block runs (Pillow's, about the file
    being read) into the yielded list instead of printing them."""
    _install_warning_hook()
    caught: list[str] = []
    outer = getattr(_DECODING, "sink", None)
    _DECODING.sink = caught
    try:
        yield caught
    finally:
        _DECODING.sink = outer


@dataclass
class Decoded:
    """One decoded file: the upright RGB image, the SHA-256 of the file's bytes (what caches
    are keyed by: the same bytes give the same pixels, whatever the path or modification time),
    and the decoder's warnings about the file (kept with it, never printed)."""

    image: Image.Image
    digest: str
    warnings: list[str] = field(default_factory=list)


def has_image_extension(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` ends in one of :data:`IMAGE_EXTENSIONS`, ignoring case."""
    return str(path).lower().endswith(IMAGE_EXTENSIONS)


def load_image(path: str | os.PathLike[str], *, max_pixels: int | None = None) -> Image.Image:
    """Decode an image file fully into an 8-bit RGB image, upright (see :func:`decode_file`).

    Decoder warnings are dropped here, and no digest is taken (files are checked, and hashed,
    once when a set is loaded; this is the decode that fills the training tensor): callers that
    need either use :func:`decode_file`.
    """
    return decode_file(path, max_pixels=max_pixels, digest=False).image


def decode_file(path: str | os.PathLike[str], *, max_pixels: int | None = None, digest: bool = True) -> Decoded:
    """Decode an image file fully into an 8-bit RGB image, upright, with its content digest.

    The file is read once; its bytes are hashed (SHA-256, ~2 GB/s, far below decoding cost) and
    decoded from memory. The whole image is decoded here (not lazily), so a truncated file
    fails at load time with its path instead of midway through an epoch. EXIF orientation is
    applied, because phone photos are usually stored sideways and only the tag says so.
    Transparent pixels are composited on white, the colour most datasets' backgrounds have.
    16-bit images are scaled (65535 -> 255), not clipped, so a 16-bit scan keeps its contrast.

    Args:
        path: The image file.
        max_pixels: Refuse images with more pixels than this, a guard against decompression bombs
            (a small file that expands to gigabytes). ``None`` means :func:`max_pixels_limit`
            (``--max-image-pixels`` / ``$HEADSTART_MAX_IMAGE_PIXELS``, else 89,478,485).
        digest: Hash the bytes (``digest`` is ``""`` without).

    Returns:
        The image (independent of the file, which is closed), digest and decoder warnings.

    Raises:
        BadImageError: The file is missing, empty, not an image, truncated or corrupt, or too
            large; ``reason`` says which, with the decoder's warnings about the file appended.
    """
    path_str = str(path)
    limit = max_pixels_limit() if max_pixels is None else max_pixels
    _check_file(path_str)
    try:
        with open(path_str, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        raise BadImageError(path_str, f"cannot read the file ({exc})") from None
    sha = hashlib.sha256(raw).hexdigest() if digest else ""
    with decoder_warnings() as caught:
        try:
            image = _decode(path_str, raw, limit)
        except BadImageError as exc:
            if caught:
                exc.reason = f"{exc.reason}; decoder warnings: {'; '.join(_unique(caught))}"
                exc.args = (f"{exc.path}: {exc.reason}",)
            raise
    return Decoded(image=image, digest=sha, warnings=_unique(caught))


def decode_bytes(raw: bytes, *, name: str = "upload", max_pixels: int | None = None) -> Image.Image:
    """:func:`load_image` for bytes already in memory (an upload): the same checks (empty,
    not an image, truncated, a decompression bomb over the pixel limit), upright, RGB.

    Raises:
        BadImageError: ``reason`` says what is wrong with the bytes; ``path`` is ``name``.
    """
    if not raw:
        raise BadImageError(name, "empty (0 bytes)")
    limit = max_pixels_limit() if max_pixels is None else max_pixels
    with decoder_warnings():
        return _decode(name, raw, limit)


def _unique(messages: list[str]) -> list[str]:
    return list(dict.fromkeys(messages))


def _decode(path_str: str, raw: bytes, limit: int) -> Image.Image:
    try:
        with _PIXEL_LIMIT_LOCK:
            saved = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = None
            try:
                img = Image.open(io.BytesIO(raw))
            finally:
                Image.MAX_IMAGE_PIXELS = saved
    except UnidentifiedImageError:
        raise BadImageError(
            path_str, "not an image file Pillow can read (unknown or unsupported format)"
        ) from None
    except Image.DecompressionBombError as exc:
        raise BadImageError(path_str, _bomb_reason(None, limit, detail=str(exc))) from None
    except OSError as exc:  # the bytes are in memory: this is Pillow failing to parse them
        raise BadImageError(path_str, f"corrupt or truncated image header ({exc})") from None
    except Exception as exc:  # noqa: BLE001 - any parser failure means a corrupt header
        raise BadImageError(
            path_str, f"corrupt image header ({type(exc).__name__}: {exc})"
        ) from None

    with img:
        width, height = img.size
        if width * height > limit:
            raise BadImageError(path_str, _bomb_reason((width, height), limit))
        try:
            img.load()
        except Image.DecompressionBombError as exc:
            raise BadImageError(path_str, _bomb_reason(None, limit, detail=str(exc))) from None
        except Exception as exc:  # noqa: BLE001 - decoders raise OSError, SyntaxError, ...
            raise BadImageError(
                path_str, f"truncated or corrupt image data ({type(exc).__name__}: {exc})"
            ) from None
        try:
            upright = ImageOps.exif_transpose(img)
            return _to_rgb(upright if upright is not None else img)
        except Exception as exc:  # noqa: BLE001 - exotic modes or broken EXIF blocks
            raise BadImageError(
                path_str, f"cannot convert image of mode {img.mode!r} to RGB ({exc})"
            ) from None


def _check_file(path: str) -> None:
    """Turn the common file-system problems into readable reasons before Pillow sees the file."""
    if not os.path.exists(path):
        raise BadImageError(path, "file not found")
    if os.path.isdir(path):
        raise BadImageError(path, "is a directory, not an image file")
    try:
        size = os.path.getsize(path)
    except OSError as exc:
        raise BadImageError(path, f"cannot read the file ({exc})") from None
    if size == 0:
        raise BadImageError(path, "empty file (0 bytes)")


def _bomb_reason(size: tuple[int, int] | None, limit: int, *, detail: str = "") -> str:
    """Explain a pixel-limit refusal and how to lift it for a trusted file."""
    if size is not None:
        w, h = size
        what = f"image is {w}x{h} = {w * h:,} pixels, over the limit of {limit:,}"
        needed = w * h
    else:
        what = f"image is over the pixel limit of {limit:,} ({detail})"
        needed = 2 * limit
    return (
        f"{what} (a guard against decompression bombs); if you trust this file, raise the limit "
        f"with --max-image-pixels {needed} or {MAX_PIXELS_ENV}={needed}"
    )


def _to_rgb(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode to RGB with the right pixel values."""
    mode = img.mode
    if mode == "RGB":
        return img.copy()
    if mode in _SIXTEEN_BIT_MODES or mode in ("I", "F"):
        gray = _scale_to_uint8(np.asarray(img), mode)
        return Image.fromarray(np.repeat(gray[..., None], 3, axis=2), mode="RGB")
    if mode in _ALPHA_MODES or "transparency" in img.info:
        if mode == "La":
            img = img.convert("LA")
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, _WHITE + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def _scale_to_uint8(values: np.ndarray, mode: str) -> np.ndarray:
    """Map high-bit-depth or float pixel values to 0..255 without clipping.

    16-bit modes divide by 257 (so 65535 -> 255 and 257 -> 1, exactly inverting the usual
    8-to-16-bit expansion). Mode ``I`` (32-bit int) carries no bit depth: values within 0..255
    are taken as 8-bit, within 0..65535 as 16-bit, anything else is stretched min..max. Mode ``F``
    within 0..1 is scaled by 255, within 0..255 kept, anything else stretched min..max.
    """
    x = np.asarray(values, dtype=np.float64)
    if mode in _SIXTEEN_BIT_MODES:
        return np.rint(x / 257.0).astype(np.uint8)
    x = np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = (float(x.min()), float(x.max())) if x.size else (0.0, 0.0)
    if mode == "F" and lo >= 0.0 and hi <= 1.0:
        x = x * 255.0
    elif lo >= 0.0 and hi <= 255.0:
        pass
    elif mode == "I" and lo >= 0.0 and hi <= 65535.0:
        x = x / 257.0
    elif hi > lo:
        x = (x - lo) * (255.0 / (hi - lo))
    else:
        x = np.zeros_like(x)
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def to_square_uint8(img: Image.Image, size: int) -> np.ndarray:
    """Resize the shorter side to ``size`` and centre-crop to a ``size`` x ``size`` array.

    This is how folder images are stored for training: one fixed square per image, so batches
    stack and decoded JPEGs can be kept in memory. The crop and resize are one Pillow call (the
    crop box is given in source coordinates), which keeps sub-pixel centring exact; Pillow's
    bilinear filter widens its support when shrinking, so downscaling is antialiased.

    Args:
        img: An image, normally from :func:`load_image` (other modes are converted to RGB).
        size: Side of the output square, in pixels.

    Returns:
        A ``(size, size, 3)`` uint8 array.
    """
    if size <= 0:
        raise ValueError(f"size must be a positive number of pixels, got {size}")
    if img.mode != "RGB":
        img = _to_rgb(img)
    w, h = img.size
    side = min(w, h)
    left = (w - side) / 2.0
    top = (h - side) / 2.0
    out = img.resize(
        (size, size),
        resample=Image.Resampling.BILINEAR,
        box=(left, top, left + side, top + side),
    )
    return np.asarray(out, dtype=np.uint8).copy()


@contextlib.contextmanager
def pixel_limit(max_pixels: int | None) -> Iterator[None]:
    """Decode with ``max_pixels`` as the decompression-bomb limit while the block runs (every
    decoding thread reads ``$HEADSTART_MAX_IMAGE_PIXELS``); ``None`` leaves the limit as it is."""
    if max_pixels is None:
        yield
        return
    saved = os.environ.get(MAX_PIXELS_ENV)
    os.environ[MAX_PIXELS_ENV] = str(int(max_pixels))
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(MAX_PIXELS_ENV, None)
        else:
            os.environ[MAX_PIXELS_ENV] = saved


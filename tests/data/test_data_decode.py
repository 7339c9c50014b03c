"""load_image and to_square_uint8: every Pillow mode to RGB, EXIF rotation, bad files."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from PIL import Image

from headstart.data.decode import (
    IMAGE_EXTENSIONS,
    has_image_extension,
    load_image,
    to_square_uint8,
)
from headstart.errors import BadImageError


def _save(img: Image.Image, path, **kw) -> str:
    img.save(path, **kw)
    return str(path)


def _pixel(path) -> tuple[int, int, int]:
    img = load_image(path)
    assert img.mode == "RGB"
    return tuple(int(v) for v in np.asarray(img)[0, 0])


@pytest.mark.parametrize(
    ("mode", "value", "fmt", "expected"),
    [
        ("L", 100, "png", (100, 100, 100)),
        ("1", 1, "png", (255, 255, 255)),
        ("1", 0, "bmp", (0, 0, 0)),
        ("RGB", (10, 20, 30), "png", (10, 20, 30)),
        ("LA", (0, 0), "png", (255, 255, 255)),
        ("LA", (40, 255), "png", (40, 40, 40)),
        ("RGBA", (0, 0, 0, 0), "png", (255, 255, 255)),
        ("RGBA", (200, 0, 0, 255), "png", (200, 0, 0)),
        ("RGBA", (0, 0, 0, 128), "png", (127, 127, 127)),
        ("CMYK", (0, 0, 0, 0), "tiff", (255, 255, 255)),
        ("CMYK", (255, 0, 0, 0), "tiff", (0, 255, 255)),
        ("I;16", 65535, "png", (255, 255, 255)),
        ("I;16", 257, "png", (1, 1, 1)),
        ("I;16", 0, "tiff", (0, 0, 0)),
        ("I", 65535, "tiff", (255, 255, 255)),
        ("I", 200, "tiff", (200, 200, 200)),
        ("F", 0.5, "tiff", (128, 128, 128)),
        ("F", 1.0, "tiff", (255, 255, 255)),
    ],
)
def test_modes_decode_to_rgb(tmp_path, mode, value, fmt, expected):
    img = Image.new(mode, (5, 4), value)
    path = _save(img, tmp_path / f"x.{fmt}")
    assert _pixel(path) == expected


def test_sixteen_bit_gradient_scales_not_clips(tmp_path):
    values = np.array([[0, 257 * 50, 257 * 200, 65535]], dtype=np.uint16)
    path = _save(Image.fromarray(values), tmp_path / "g.png")
    out = np.asarray(load_image(path))[0, :, 0]
    assert out.tolist() == [0, 50, 200, 255]


def test_palette_colour_and_transparency(tmp_path):
    img = Image.new("P", (4, 2), 0)
    img.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    img.putpixel((1, 0), 1)
    path = _save(img, tmp_path / "p.png")
    arr = np.asarray(load_image(path))
    assert tuple(arr[0, 0]) == (10, 20, 30)
    assert tuple(arr[0, 1]) == (200, 100, 50)

    path_t = _save(img, tmp_path / "pt.png", transparency=0)
    arr_t = np.asarray(load_image(path_t))
    assert tuple(arr_t[0, 0]) == (255, 255, 255)
    assert tuple(arr_t[0, 1]) == (200, 100, 50)


def test_gif_with_transparency(tmp_path):
    img = Image.new("P", (3, 3), 0)
    img.putpalette([1, 2, 3, 90, 80, 70] + [0] * 762)
    img.putpixel((2, 2), 1)
    path = _save(img, tmp_path / "t.gif", transparency=0)
    arr = np.asarray(load_image(path))
    assert tuple(arr[0, 0]) == (255, 255, 255)
    assert tuple(arr[2, 2]) == (90, 80, 70)


@pytest.mark.parametrize("ext", ["jpg", "png", "bmp", "gif", "tif", "webp"])
def test_common_formats(tmp_path, ext):
    path = _save(Image.new("RGB", (7, 3), (0, 128, 255)), tmp_path / f"x.{ext}")
    arr = np.asarray(load_image(path))
    assert arr.shape == (3, 7, 3) and arr.dtype == np.uint8


def test_exif_orientation_rotates(tmp_path):
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6
    path = _save(img, tmp_path / "rot.jpg", exif=exif.tobytes())
    with Image.open(path) as raw:
        assert raw.size == (40, 20)
    assert load_image(path).size == (20, 40)


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(BadImageError) as info:
        load_image(path)
    assert info.value.path == str(path)
    assert "empty" in info.value.reason and str(path) in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(BadImageError, match="file not found"):
        load_image(tmp_path / "nope.png")


def test_not_an_image(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("hello, I am text")
    with pytest.raises(BadImageError) as info:
        load_image(path)
    assert info.value.path == str(path)
    assert "not an image" in info.value.reason


@pytest.mark.parametrize("fmt", ["png", "jpeg"])
def test_truncated_file(tmp_path, fmt):
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    full = tmp_path / f"full.{fmt}"
    img.save(full, format=fmt)
    data = full.read_bytes()
    cut = tmp_path / f"cut.{fmt}"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(BadImageError) as info:
        load_image(cut)
    assert info.value.path == str(cut)
    assert "truncated" in info.value.reason


def test_decompression_bomb_with_small_limit(tmp_path):
    path = _save(Image.new("RGB", (20, 10)), tmp_path / "big.png")
    with pytest.raises(BadImageError) as info:
        load_image(path, max_pixels=100)
    assert info.value.path == str(path)
    assert "200 pixels" in info.value.reason and "--max-image-pixels 200" in info.value.reason
    assert load_image(path, max_pixels=200).size == (20, 10)


def test_the_limit_is_headstarts_own_and_pillows_global_is_left_alone(tmp_path, monkeypatch):
    path = _save(Image.new("RGB", (30, 30)), tmp_path / "big.png")
    monkeypatch.setenv("HEADSTART_MAX_IMAGE_PIXELS", "100")
    with pytest.raises(BadImageError, match="decompression bomb"):
        load_image(path)
    monkeypatch.setenv("HEADSTART_MAX_IMAGE_PIXELS", "450")  # between the limit and twice it
    with pytest.raises(BadImageError, match="900"):
        load_image(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 450)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Pillow's own DecompressionBombWarning never fires
        assert load_image(path, max_pixels=10_000).size == (30, 30)
    assert Image.MAX_IMAGE_PIXELS == 450


def test_to_square_uint8_centre_crop(tmp_path):
    arr = np.zeros((20, 60, 3), dtype=np.uint8)
    arr[:, :20] = (255, 0, 0)
    arr[:, 20:40] = (0, 255, 0)
    arr[:, 40:] = (0, 0, 255)
    out = to_square_uint8(Image.fromarray(arr), 10)
    assert out.shape == (10, 10, 3) and out.dtype == np.uint8
    inner = out[:, 1:-1]  # the edge columns blend with red/blue as a resize-then-crop would
    assert (inner[:, :, 1] == 255).all() and (inner[:, :, 0] == 0).all()
    assert (out[:, :, 1] > 200).all()

    tall = to_square_uint8(Image.fromarray(arr.transpose(1, 0, 2).copy()), 10)
    assert tall.shape == (10, 10, 3) and (tall[1:-1, :, 1] == 255).all()


def test_to_square_uint8_upscales_and_converts():
    out = to_square_uint8(Image.new("L", (3, 5), 77), 16)
    assert out.shape == (16, 16, 3) and (out == 77).all()


def test_to_square_uint8_antialiases():
    checker = (np.indices((64, 64)).sum(axis=0) % 2 * 255).astype(np.uint8)
    out = to_square_uint8(Image.fromarray(checker), 8)
    assert np.abs(out.astype(int) - 127).max() <= 3


def test_image_extensions():
    expected = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
    assert set(IMAGE_EXTENSIONS) == expected
    assert has_image_extension("A/B.JPG") and has_image_extension("x.TiFf")
    assert not has_image_extension("notes.txt")

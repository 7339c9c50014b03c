"""Every exact (deterministic) transform form against a naive reference written here.

The label-safety audit and test-time augmentation apply each family at an exact magnitude
(``TRANSFORMS.get(name).exact``). These tests compute the same image independently, in numpy,
from the definition of each family, and compare numbers (uint8 rounding: at most 1 apart):

- crop (the zoom): ``crop:a`` keeps the central crop of share ``a`` of the *area*, so each side
  keeps ``sqrt(a)`` of its length, resized back bilinearly;
- rotate: counter-clockwise on screen by ``m`` degrees about the image centre, bilinear, zeros enter;
- translate: right by ``round(m * width)`` pixels, zeros enter;
- shear: along x by ``m`` degrees: the row ``y`` pixels below the centre reads the input
  ``tan(m) * y`` pixels further right (rows below the centre move left), bilinear, zeros enter;
- contrast: blend with the image's mean grey (luma), ``factor = 1 - m``;
- saturation: blend with the pixel's own grey (luma), ``factor = 1 - m`` (``m = 1``: grey image);
- blur: Gaussian of standard deviation ``sigma`` pixels, kernel radius ``ceil(3 * sigma)``,
  reflected borders.

The geometric references sample with pixel centres at integer indices and the image centre at
``((W - 1) / 2, (H - 1) / 2)``.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from headstart.augment import TRANSFORMS, View, run_audit, tta_views

LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601 weights of R, G, B


# -- images --------------------------------------------------------------------------------------


def _texture(h: int = 24, w: int = 24, seed: int = 0) -> np.ndarray:
    """(3, h, w) float: a gradient in red, a 3-px checkerboard in green, noise in blue, so that
    any wrong pixel mapping (mirror, offset, scale) changes many values."""
    yy, xx = np.mgrid[0:h, 0:w]
    r = 20 + 200 * (xx + 2 * yy) / (w + 2 * h)
    g = np.where(((xx // 3) + (yy // 3)) % 2 == 0, 230.0, 25.0)
    b = np.random.default_rng(seed).integers(0, 256, (h, w)).astype(np.float64)
    return np.stack([r, g, b]).round()


def _batch(*imgs: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.stack(imgs).astype(np.uint8))


def _diff(got: torch.Tensor, ref: np.ndarray) -> float:
    """Largest absolute difference between a uint8 result and a float reference (rounded)."""
    assert got.dtype == torch.uint8 and tuple(got.shape) == ref.shape, (got.dtype, tuple(got.shape), ref.shape)
    return float(np.abs(got.numpy().astype(np.float64) - np.clip(np.round(ref), 0, 255)).max())


def _exact(name: str, x: torch.Tensor, m: float) -> torch.Tensor:
    return TRANSFORMS.get(name).exact(x, m)


# -- naive references ----------------------------------------------------------------------------


def _sample(img: np.ndarray, sx: np.ndarray, sy: np.ndarray) -> np.ndarray:
    """Bilinear sample of (C, H, W) ``img`` at pixel coordinates (sx, sy); outside is 0."""
    _, h, w = img.shape
    x0, y0 = np.floor(sx).astype(int), np.floor(sy).astype(int)
    fx, fy = sx - x0, sy - y0
    out = np.zeros((img.shape[0],) + sx.shape)
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            yi, xi = y0 + dy, x0 + dx
            inside = (yi >= 0) & (yi < h) & (xi >= 0) & (xi < w)
            out += img[:, yi.clip(0, h - 1), xi.clip(0, w - 1)] * (inside * wy * wx)
    return out


def _warp(img: np.ndarray, source_of) -> np.ndarray:
    """Each output pixel reads the input at ``source_of(x, y)``, both in coordinates centred on
    the image centre (x right, y down)."""
    _, h, w = img.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    cx, cy = (w - 1) / 2, (h - 1) / 2
    sx, sy = source_of(xx - cx, yy - cy)
    return _sample(img, sx + cx, sy + cy)


def _rotate_ref(img: np.ndarray, degrees: float) -> np.ndarray:
    t = math.radians(degrees)  # counter-clockwise on screen: the output's top reads the input's right
    return _warp(img, lambda x, y: (x * math.cos(t) - y * math.sin(t), x * math.sin(t) + y * math.cos(t)))


def _shear_ref(img: np.ndarray, degrees: float) -> np.ndarray:
    k = math.tan(math.radians(degrees))
    return _warp(img, lambda x, y: (x + k * y, y))


def _shift_ref(img: np.ndarray, px: int) -> np.ndarray:
    out = np.zeros_like(img)
    out[..., px:] = img[..., : img.shape[-1] - px]
    return out


def _upsample_1d(a: np.ndarray, size: int, axis: int) -> np.ndarray:
    """Linear resize along ``axis`` with half-pixel centres, edges held (``size`` >= input)."""
    n = a.shape[axis]
    src = ((np.arange(size) + 0.5) * n / size - 0.5).clip(0, n - 1)
    i0 = np.floor(src).astype(int)
    i1 = np.minimum(i0 + 1, n - 1)
    f = src - i0
    shape = [1] * a.ndim
    shape[axis] = size
    f = f.reshape(shape)
    return np.take(a, i0, axis=axis) * (1 - f) + np.take(a, i1, axis=axis) * f


def _zoom_refs(img: np.ndarray, area: float) -> list[np.ndarray]:
    """The central crop keeping ``area`` of the area (each side times sqrt(area)), resized back;
    one reference per placement when a margin is odd (the crop sits half a pixel either way)."""
    _, h, w = img.shape
    sh, sw = round(h * math.sqrt(area)), round(w * math.sqrt(area))
    tops = sorted({math.floor((h - sh) / 2), math.ceil((h - sh) / 2)})
    lefts = sorted({math.floor((w - sw) / 2), math.ceil((w - sw) / 2)})
    return [
        _upsample_1d(_upsample_1d(img[:, t : t + sh, l : l + sw], h, 1), w, 2)
        for t, l in itertools.product(tops, lefts)
    ]


def _zoom_diff(got: torch.Tensor, refs: list[np.ndarray]) -> float:
    return min(_diff(got, r) for r in refs)


def _luma(img: np.ndarray) -> np.ndarray:
    return np.tensordot(LUMA, img, axes=(0, 0))  # (H, W)


def _contrast_ref(img: np.ndarray, m: float) -> np.ndarray:
    f = 1 - m
    return f * img + (1 - f) * _luma(img).mean()


def _saturation_ref(img: np.ndarray, m: float) -> np.ndarray:
    f = 1 - m
    return f * img + (1 - f) * _luma(img)[None]


def _blur_ref(img: np.ndarray, sigma: float) -> np.ndarray:
    r = math.ceil(3 * sigma)
    t = np.arange(-r, r + 1, dtype=np.float64)
    k = np.exp(-0.5 * (t / sigma) ** 2)
    k /= k.sum()
    p = np.pad(img, ((0, 0), (r, r), (r, r)), mode="reflect")  # edge not repeated: d c b | a b c d | c b a
    h, w = img.shape[1:]
    rows = sum(k[i] * p[:, i : i + h, :] for i in range(2 * r + 1))
    return sum(k[i] * rows[:, :, i : i + w] for i in range(2 * r + 1))


def _reference(name: str, img: np.ndarray, m: float) -> list[np.ndarray]:
    """Every acceptable reference for family ``name`` at magnitude ``m`` on one (3, H, W) image."""
    if name == "crop":
        return _zoom_refs(img, m)
    return [{
        "hflip": lambda: img[..., ::-1],
        "vflip": lambda: img[..., ::-1, :],
        "rotate": lambda: _rotate_ref(img, m),
        "translate": lambda: _shift_ref(img, round(m * img.shape[-1])),
        "shear": lambda: _shear_ref(img, m),
        "brightness": lambda: (1 - m) * img,
        "contrast": lambda: _contrast_ref(img, m),
        "saturation": lambda: _saturation_ref(img, m),
        "blur": lambda: _blur_ref(img, m),
    }[name]()]


# -- crop: the centre zoom -----------------------------------------------------------------------


@pytest.mark.parametrize("h, w, area", [(24, 24, 0.5625), (40, 40, 0.64), (30, 40, 0.64), (28, 28, 0.85), (28, 28, 0.4)])
def test_centre_zoom_is_the_central_crop_of_that_share_of_the_area_resized_back(h, w, area):
    a, b = _texture(h, w, 1), _texture(h, w, 2)[::-1].copy()
    got = _exact("crop", _batch(a, b), area)
    assert _zoom_diff(got[0], _zoom_refs(a, area)) <= 1
    assert _zoom_diff(got[1], _zoom_refs(b, area)) <= 1


def test_centre_zoom_enlarges_a_marked_square_by_one_over_sqrt_area():
    # a white 20 px square in the middle of a black 40 px image; crop:0.64 keeps the central
    # 32 px (0.8 of the side, 64 % of the area), so the square comes back 20 / 0.8 = 25 px wide
    x = torch.zeros(1, 3, 40, 40, dtype=torch.uint8)
    x[..., 10:30, 10:30] = 255
    out = _exact("crop", x, 0.64)[0, 0].double() / 255
    width, height = float(out[20].sum()), float(out[:, 20].sum())  # edges half-lit count half
    assert abs(width - 25) < 0.1 and abs(height - 25) < 0.1, (width, height)
    assert float(out[20, :7].max()) == 0 and float(out[20, 8:32].min()) == 1  # centred: 7.5 .. 32.5
    # crop:0.25 keeps exactly the square (half the side): all white, corners included
    assert bool((_exact("crop", x, 0.25) == 255).all())
    # crop:1 keeps the whole image
    assert torch.equal(_exact("crop", x, 1.0), x)


def test_the_default_tta_views_are_the_exact_mirror_and_zoom():
    views, _ = tta_views()
    img = _texture(28, 28, 3)
    x = _batch(img)
    by_name = {v.name: v for v in views}
    assert set(by_name) == {"identity", "hflip:1", "crop:0.85"}
    assert torch.equal(by_name["identity"](x), x)
    assert _diff(by_name["hflip:1"](x)[0], img[..., ::-1]) == 0
    assert _zoom_diff(by_name["crop:0.85"](x)[0], _zoom_refs(img, 0.85)) <= 1
    assert _zoom_diff(View("crop", 0.6)(x)[0], _zoom_refs(img, 0.6)) <= 1


# -- rotate, shift, shear -----------------------------------------------------------------------


@pytest.mark.parametrize("degrees", [15.0, 45.0, 90.0, 180.0])
def test_rotate_turns_counter_clockwise_about_the_centre_bilinearly(degrees):
    img = _texture(24, 24, 4)
    assert _diff(_exact("rotate", _batch(img), degrees)[0], _rotate_ref(img, degrees)) <= 1


def test_rotate_direction_on_a_marked_pixel():
    # a bright dot right of the centre ends up above it after a quarter turn; after 45° it sits
    # up and to the right, on the diagonal
    x = torch.zeros(1, 1, 21, 21, dtype=torch.uint8)
    x[0, 0, 10, 18] = 255  # 8 px right of the centre (10, 10)
    y, xx = divmod(int(_exact("rotate", x, 90.0)[0, 0].argmax()), 21)
    assert (y, xx) == (2, 10)
    out = _exact("rotate", x, 45.0)[0, 0].float()
    ys, xs = torch.meshgrid(torch.arange(21.0), torch.arange(21.0), indexing="ij")
    cy, cx = float((out * ys).sum() / out.sum()), float((out * xs).sum() / out.sum())
    d = 8 / math.sqrt(2)
    assert abs(cy - (10 - d)) < 0.3 and abs(cx - (10 + d)) < 0.3


@pytest.mark.parametrize("h, w, m, px", [(20, 30, 0.1, 3), (20, 30, 0.2, 6), (20, 30, 0.3, 9), (24, 28, 0.1, 3), (24, 28, 0.2, 6)])
def test_shift_moves_right_by_that_share_of_the_width_rounded(h, w, m, px):
    # not square: the share is of the width; 0.1 * 28 = 2.8 px is 3 px, 0.2 * 28 = 5.6 px is 6
    img = _texture(h, w, 5)
    assert px == round(m * w)
    assert _diff(_exact("translate", _batch(img), m)[0], _shift_ref(img, px)) == 0


@pytest.mark.parametrize("degrees", [10.0, 25.0, 45.0])
def test_shear_slants_along_x_by_that_many_degrees(degrees):
    img = _texture(24, 24, 6)
    assert _diff(_exact("shear", _batch(img), degrees)[0], _shear_ref(img, degrees)) <= 1


def test_shear_direction_on_a_vertical_bar():
    # a one-pixel vertical line through the centre column; shear:45 moves each row by its
    # distance from the centre: the bottom row's line goes left, the top row's right, by 45°
    x = torch.zeros(1, 1, 21, 21, dtype=torch.uint8)
    x[..., 10] = 255
    out = _exact("shear", x, 45.0)[0, 0]
    for row in (0, 5, 10, 15, 20):
        assert int(out[row].argmax()) == 10 - (row - 10) and int(out[row].max()) == 255, row
    assert (out > 0).sum() == 21  # a straight slanted line, nothing else


# -- colour ----------------------------------------------------------------------------------------


def _colour_images() -> tuple[np.ndarray, np.ndarray]:
    """Two (3, 20, 20) images with very different channel means and content: a red-heavy texture
    with pure red / green / blue / white patches, and a dark blue-heavy noise image."""
    a = _texture(20, 20, 7)
    a[:, :4, :4] = np.array([255, 0, 0])[:, None, None]
    a[:, :4, 4:8] = np.array([0, 255, 0])[:, None, None]
    a[:, :4, 8:12] = np.array([0, 0, 255])[:, None, None]
    a[:, :4, 12:16] = 255
    rng = np.random.default_rng(8)
    b = np.stack([rng.integers(0, 60, (20, 20)), rng.integers(0, 90, (20, 20)), rng.integers(120, 256, (20, 20))]).astype(np.float64)
    return a, b


@pytest.mark.parametrize("m", [0.3, 0.6, 0.9])
def test_contrast_blends_each_image_with_its_own_mean_grey(m):
    a, b = _colour_images()
    got = _exact("contrast", _batch(a, b), m)
    assert _diff(got[0], _contrast_ref(a, m)) <= 1
    assert _diff(got[1], _contrast_ref(b, m)) <= 1


@pytest.mark.parametrize("m", [0.3, 0.5, 1.0])
def test_saturation_blends_each_pixel_with_its_own_grey(m):
    a, b = _colour_images()
    got = _exact("saturation", _batch(a, b), m)
    assert _diff(got[0], _saturation_ref(a, m)) <= 1
    assert _diff(got[1], _saturation_ref(b, m)) <= 1
    if m == 1.0:  # all colour gone: three equal channels, pure red is its luma 76
        assert bool((got[:, 0] == got[:, 1]).all() and (got[:, 1] == got[:, 2]).all())
        assert abs(int(got[0, 0, 0, 0]) - 76) <= 1


@pytest.mark.parametrize("m", [0.3, 0.6])
def test_brightness_scales_every_channel_towards_black(m):
    a, b = _colour_images()
    got = _exact("brightness", _batch(a, b), m)
    assert _diff(got[0], (1 - m) * a) <= 1 and _diff(got[1], (1 - m) * b) <= 1


@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.0])
def test_blur_is_a_gaussian_of_that_sigma_with_radius_three_sigma(sigma):
    a, b = _colour_images()
    got = _exact("blur", _batch(a, b), sigma)
    assert _diff(got[0], _blur_ref(a, sigma)) <= 1
    assert _diff(got[1], _blur_ref(b, sigma)) <= 1


def test_blur_of_a_single_bright_pixel_is_the_gaussian_itself():
    # the impulse response: one white pixel spreads into exp(-r^2 / 2 sigma^2), normalised,
    # out to ceil(3 sigma) pixels and no further
    x = torch.zeros(1, 1, 25, 25, dtype=torch.uint8)
    x[0, 0, 12, 12] = 255
    sigma = 1.0
    out = _exact("blur", x, sigma)[0, 0].double()
    t = np.arange(-3, 4)
    g = np.exp(-0.5 * (t / sigma) ** 2)
    g /= g.sum()
    ref = np.zeros((25, 25))
    ref[9:16, 9:16] = 255 * np.outer(g, g)
    assert float(np.abs(out.numpy() - ref.round()).max()) <= 1
    assert torch.equal(_exact("blur", x, 0.0), x)


# -- the audit applies exactly these forms -------------------------------------------------------


def test_the_audit_shows_the_model_each_family_at_each_exact_level():
    img = _texture(28, 28, 9)
    x = _batch(img, img[:, ::-1].copy())
    seen: list[torch.Tensor] = []

    def predict(images: torch.Tensor) -> np.ndarray:
        seen.append(images.clone())
        return np.zeros(len(images), dtype=int)

    res = run_audit(predict, x, np.array([0, 1]), ["a", "b"])
    rows = [(r["family"], r["magnitude"]) for r in res["rows"]]
    assert {f for f, _ in rows} >= {"hflip", "vflip", "crop", "rotate", "translate", "shear",
                                    "brightness", "contrast", "saturation", "blur"}
    for fam in {f for f, _ in rows}:
        assert [m for f, m in rows if f == fam] == list(TRANSFORMS.get(fam).audit_levels), fam
    assert len(seen) == 1 + len(rows) and torch.equal(seen[0], x)
    for (fam, m), images in zip(rows, seen[1:]):
        for i in range(len(x)):
            got = min(_diff(images[i], ref) for ref in _reference(fam, x[i].numpy().astype(np.float64), m))
            assert got <= 1, (fam, m, i, got)

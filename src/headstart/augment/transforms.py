"""Transform families: each one a torchvision ``transforms.v2`` op with one magnitude.

A family has a random form (what training applies: ``rotate:15`` rotates by a uniform angle in
±15°) and, where one exists, a deterministic form at an exact magnitude (what the label-safety
audit and test-time augmentation apply: rotate by exactly 90°). The magnitude is the single
number a user writes after the colon; ``identity`` is the magnitude at which the family changes
nothing, so a global strength ``s`` moves every magnitude along the line identity → written
value → beyond (``identity + (value - identity) * s``, clipped to the family's range).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from ..errors import ConfigError
from ..registry import Registry

# geometric ops interpolate bilinearly: small stored images (28 px) turn to blocks under nearest
BILINEAR = v2.InterpolationMode.BILINEAR


@dataclass(frozen=True)
class Family:
    """One kind of transform, parameterised by a single magnitude."""

    name: str
    doc: str
    unit: str
    default: float  # the magnitude when none is written (``hflip`` = ``hflip:0.5``)
    identity: float  # the magnitude that changes nothing
    low: float  # the range a magnitude is clipped to
    high: float
    random: Callable[[float, int], Callable[[torch.Tensor], torch.Tensor]]  # (magnitude, size) → random transform
    exact: Callable[[torch.Tensor, float], torch.Tensor] | None  # (uint8 images, magnitude) → transformed
    audit_levels: tuple[float, ...] = ()  # exact magnitudes the audit tries, mildest first
    geometric: bool = True

    def scaled(self, value: float, strength: float) -> float:
        """``value`` moved ``strength`` times as far from identity, within the family's range (a
        flip's probability stays as written at any strength above 0)."""
        if self.unit == "probability":
            return value if strength > 0 else self.identity
        return float(min(self.high, max(self.low, self.identity + (value - self.identity) * strength)))

    def milder_or_equal(self, value: float, limit: float) -> bool:
        """Whether ``value`` changes an image no more than ``limit`` does."""
        return abs(value - self.identity) <= abs(limit - self.identity) + 1e-9


TRANSFORMS: Registry[Family] = Registry("transform")


def _family(**kw) -> Family:
    fam = Family(**kw)
    TRANSFORMS.register(fam.name)(fam)
    return fam


def _center_zoom(x: torch.Tensor, area: float) -> torch.Tensor:
    h, w = x.shape[-2:]
    side_h, side_w = max(1, round(h * math.sqrt(area))), max(1, round(w * math.sqrt(area)))
    return TF.resize(TF.center_crop(x, [side_h, side_w]), [h, w], antialias=True)


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    if sigma <= 0:
        return x
    k = 2 * math.ceil(3 * sigma) + 1
    return TF.gaussian_blur(x, [k, k], [sigma, sigma])


_family(
    name="hflip", doc="mirror left-right (magnitude: probability)", unit="probability", default=0.5, identity=0.0,
    low=0.0, high=1.0, random=lambda m, s: v2.RandomHorizontalFlip(m), exact=lambda x, m: TF.horizontal_flip(x),
    audit_levels=(1.0,),
)
_family(
    name="vflip", doc="mirror top-bottom (magnitude: probability)", unit="probability", default=0.5, identity=0.0,
    low=0.0, high=1.0, random=lambda m, s: v2.RandomVerticalFlip(m), exact=lambda x, m: TF.vertical_flip(x),
    audit_levels=(1.0,),
)
_family(
    name="crop", doc="random crop of at least this share of the area, resized back", unit="min area", default=0.7,
    identity=1.0, low=0.08, high=1.0,
    random=lambda m, s: v2.RandomResizedCrop(s, scale=(m, 1.0), ratio=(3 / 4, 4 / 3), antialias=True),
    exact=_center_zoom, audit_levels=(0.8, 0.6, 0.4),
)
_family(
    name="rotate", doc="rotate by up to ± this many degrees", unit="degrees", default=15.0, identity=0.0, low=0.0,
    high=180.0, random=lambda m, s: v2.RandomRotation(m, interpolation=BILINEAR), exact=lambda x, m: TF.rotate(x, m, interpolation=BILINEAR),
    audit_levels=(15.0, 45.0, 90.0, 180.0),
)
_family(
    name="translate", doc="shift by up to this share of the side", unit="fraction", default=0.1, identity=0.0,
    low=0.0, high=0.5, random=lambda m, s: v2.RandomAffine(0, translate=(m, m), interpolation=BILINEAR),
    exact=lambda x, m: TF.affine(x, angle=0.0, translate=[round(m * x.shape[-1]), 0], scale=1.0, shear=[0.0, 0.0], interpolation=BILINEAR),
    audit_levels=(0.1, 0.2),
)
_family(
    name="shear", doc="shear by up to ± this many degrees", unit="degrees", default=10.0, identity=0.0, low=0.0,
    high=45.0, random=lambda m, s: v2.RandomAffine(0, shear=(-m, m, -m, m), interpolation=BILINEAR),
    exact=lambda x, m: TF.affine(x, angle=0.0, translate=[0, 0], scale=1.0, shear=[m, 0.0], interpolation=BILINEAR),
    audit_levels=(10.0, 25.0),
)
_family(
    name="brightness", doc="scale brightness by a factor in 1 ± this", unit="factor", default=0.3, identity=0.0,
    low=0.0, high=0.9, random=lambda m, s: v2.ColorJitter(brightness=m), exact=lambda x, m: TF.adjust_brightness(x, 1 - m),
    audit_levels=(0.3, 0.6), geometric=False,
)
_family(
    name="contrast", doc="scale contrast by a factor in 1 ± this", unit="factor", default=0.3, identity=0.0,
    low=0.0, high=0.9, random=lambda m, s: v2.ColorJitter(contrast=m), exact=lambda x, m: TF.adjust_contrast(x, 1 - m),
    audit_levels=(0.3, 0.6), geometric=False,
)
_family(
    name="saturation", doc="scale colour saturation by a factor in 1 ± this", unit="factor", default=0.3,
    identity=0.0, low=0.0, high=1.0, random=lambda m, s: v2.ColorJitter(saturation=m),
    exact=lambda x, m: TF.adjust_saturation(x, 1 - m), audit_levels=(0.5, 1.0), geometric=False,
)
_family(
    name="blur", doc="Gaussian blur, half the time, with sigma up to this (pixels)", unit="sigma", default=1.0,
    identity=0.0, low=0.0, high=5.0,
    random=lambda m, s: v2.RandomApply([v2.GaussianBlur(2 * math.ceil(3 * max(m, 0.1)) + 1, sigma=(0.1, max(m, 0.1)))], p=0.5),
    exact=_blur, audit_levels=(1.0, 2.0), geometric=False,
)


class _RandAugmentSubset(v2.RandAugment):
    """RandAugment restricted to the ops whose families are declared label-safe."""

    def __init__(self, *, keep: set[str], **kw) -> None:
        super().__init__(**kw)
        self._AUGMENTATION_SPACE = {k: v for k, v in type(self)._AUGMENTATION_SPACE.items() if k in keep}


# RandAugment's ops, by the family that stands for them in declared invariances; the pixel-value
# ops (posterize, solarize, equalize, ...) answer to ``tone``.
RANDAUGMENT_OPS = {
    "Identity": None, "ShearX": "shear", "ShearY": "shear", "TranslateX": "translate", "TranslateY": "translate",
    "Rotate": "rotate", "Brightness": "brightness", "Color": "saturation", "Contrast": "contrast",
    "Sharpness": "tone", "Posterize": "tone", "Solarize": "tone", "AutoContrast": "tone", "Equalize": "tone",
}


def randaugment_op_magnitudes(magnitude: int, size: int) -> dict[str, float]:
    """Each RandAugment op's magnitude at ``magnitude`` (of 31 bins) in its family's unit."""
    space = v2.RandAugment._AUGMENTATION_SPACE
    out = {}
    for op, family in RANDAUGMENT_OPS.items():
        mags_fn, _ = space[op]
        mags = mags_fn(31, size, size)
        m = float(mags[min(magnitude, 30)]) if mags is not None and mags.ndim > 0 else 0.0
        if family == "rotate":
            out[op] = m
        elif family == "shear":
            out[op] = math.degrees(math.atan(m))
        elif family == "translate":
            out[op] = m / size
        elif family in ("brightness", "saturation", "contrast"):
            out[op] = m
        else:
            out[op] = 0.0
    return out


def _randaugment(m: float, size: int, keep: set[str] | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
    magnitude = int(round(m))
    if keep is None:
        return v2.RandAugment(num_ops=2, magnitude=magnitude, interpolation=BILINEAR)
    return _RandAugmentSubset(keep=keep, num_ops=2, magnitude=magnitude, interpolation=BILINEAR)


_family(
    name="randaugment", doc="RandAugment: 2 random ops of 14 (shear, rotate, colour, posterize, ...) at this magnitude of 30",
    unit="magnitude /30", default=9.0, identity=0.0, low=0.0, high=30.0, random=_randaugment, exact=None,
)
TONE = "tone"  # declarable only (RandAugment's pixel-value ops); not a transform of its own


def parse_steps(spec: str | list | tuple, *, what: str = "--augment") -> list[tuple[str, float]]:
    """``"crop:0.7,hflip,rotate:15"`` or a YAML list (``["rotate:15", {"crop": 0.7}]``) →
    ``[(family, magnitude), ...]``; a missing magnitude is the family's default."""
    if isinstance(spec, str):
        items: list = [s for s in (p.strip() for p in spec.split(",")) if s]
    elif isinstance(spec, (list, tuple)):
        items = list(spec)
    else:
        raise ConfigError(f"{what} must be a policy name, a 'family:magnitude,...' string or a list, not {spec!r}")
    steps = []
    for item in items:
        if isinstance(item, dict):
            if len(item) != 1:
                raise ConfigError(f"{what}: each list entry is one transform, like {{rotate: 15}}; got {item!r}")
            ((name, value),) = item.items()
        else:
            name, _, value = str(item).partition(":")
            value = value or None
        name = str(name).strip()
        if name == TONE and what == "--invariances":
            steps.append((TONE, 0.0))
            continue
        if name not in TRANSFORMS:
            raise ConfigError(
                f"{what}: unknown transform {name!r}; choose from {', '.join(TRANSFORMS.names())}"
                + (f", {TONE}" if what == "--invariances" else "")
                + " (write family:magnitude, e.g. rotate:15)"
            )
        fam = TRANSFORMS.get(name)
        try:
            mag = fam.default if value is None else float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{what}: the magnitude of {name} must be a number ({fam.unit}), not {value!r}") from None
        if not fam.low <= mag <= fam.high:
            raise ConfigError(f"{what}: {name}:{value} is outside {fam.low:g}..{fam.high:g} ({fam.unit})")
        steps.append((name, mag))
    return steps


def format_steps(steps: list[tuple[str, float]]) -> str:
    return ",".join(f"{n}:{m:g}" for n, m in steps)

"""Test-time augmentation: average the class probabilities over a few label-safe views.

A view is a deterministic transform of uint8 images (the same ``exact`` form the label-safety
audit applies). The default views are the image itself, its mirror image and a slight zoom;
a view is left out when the run's declared invariances do not include its transform, or when
a label-safety audit of the run flagged it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import ConfigError
from .transforms import TRANSFORMS, parse_steps

DEFAULT_VIEWS = "hflip,crop:0.85"


@dataclass(frozen=True)
class View:
    family: str | None  # None: the image itself
    magnitude: float = 0.0

    @property
    def name(self) -> str:
        return "identity" if self.family is None else f"{self.family}:{self.magnitude:g}"

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if self.family is None:
            return images
        return TRANSFORMS.get(self.family).exact(images, self.magnitude)  # type: ignore[misc]


def tta_views(
    spec: str | None = None, *, declared: dict[str, float] | None = None, unsafe: dict[str, float] | None = None
) -> tuple[list[View], list[str]]:
    """The identity view plus the views of ``spec`` (default ``hflip,crop:0.85``) that are
    label-safe, and a note for each view left out. ``declared``: the run's invariances for every
    class (None: nothing declared); ``unsafe``: family → the mildest magnitude an audit flagged."""
    views, notes = [View(None)], []
    for fam, mag in parse_steps(spec or DEFAULT_VIEWS, what="--tta-views"):
        family = TRANSFORMS.get(fam)
        if family.exact is None:
            raise ConfigError(f"--tta-views: {fam} has no deterministic form; choose from "
                              + ", ".join(n for n in TRANSFORMS if TRANSFORMS.get(n).exact is not None))
        if family.unit == "probability":
            mag = 1.0
        if declared is not None and (fam not in declared or not family.milder_or_equal(mag, declared[fam])):
            notes.append(f"{fam}:{mag:g} left out: not among the run's declared invariances")
        elif unsafe is not None and fam in unsafe and family.milder_or_equal(unsafe[fam], mag):
            notes.append(f"{fam}:{mag:g} left out: the label-safety audit flagged {fam} from {unsafe[fam]:g}")
        else:
            views.append(View(fam, mag))
    return views, notes


__all__ = ["DEFAULT_VIEWS", "View", "tta_views"]

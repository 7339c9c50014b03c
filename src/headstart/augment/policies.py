"""Named augmentation policies, a global strength, and the user's declared invariances.

A policy is a list of steps (transform family + magnitude, see ``transforms``). It is given by
name (``light``), as a spec string (``crop:0.6,hflip,rotate:10``) or, in a YAML config, as a
list. ``strength`` scales every magnitude (1 = as written). Declared invariances (``hflip,
rotate:15``, optionally per class: ``hflip,rotate:15;6=hflip;9=hflip``) say which transforms
keep a label: a policy then drops every transform not declared and caps each magnitude at the
declared one, class by class.

Policies run per sample on uint8 images at the stored resolution, before the batch is resized
to the model's input size, so they cost little even on 2 cores.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torchvision.transforms import v2

from ..errors import ConfigError
from ..registry import Registry
from .transforms import (
    RANDAUGMENT_OPS,
    TONE,
    TRANSFORMS,
    _randaugment,
    format_steps,
    parse_steps,
    randaugment_op_magnitudes,
)


@dataclass(frozen=True)
class NamedPolicy:
    name: str
    steps: str
    doc: str


POLICIES: Registry[NamedPolicy] = Registry("augmentation policy")


def _policy(name: str, steps: str, doc: str) -> None:
    POLICIES.register(name)(NamedPolicy(name, steps, doc))


_policy("none", "", "no augmentation: images are seen as they are (frozen features can then be cached)")
_policy("light", "crop:0.7,hflip", "random crop of 70–100 % of the area, resized back, and a horizontal flip")
_policy(
    "standard", "crop:0.6,hflip,rotate:15,translate:0.1,brightness:0.3,contrast:0.3",
    "light, plus rotation (±15°), shifts (±10 %) and brightness/contrast (±30 %)",
)
_policy("strong", "crop:0.5,hflip,randaugment:9", "crop and flip, plus RandAugment (2 random ops of 14 at magnitude 9/30)")


@dataclass(frozen=True)
class Step:
    family: str
    magnitude: float
    ops: tuple[str, ...] | None = None  # RandAugment limited to these ops (declared invariances)

    def describe(self) -> str:
        text = f"{self.family}:{self.magnitude:g}"
        return text + (f"[{'/'.join(self.ops)}]" if self.ops is not None else "")


def policy_steps(spec: Any, strength: float = 1.0) -> tuple[str, list[Step]]:
    """(name, steps) for a policy name, spec string or list; magnitudes scaled by ``strength``."""
    if strength < 0:
        raise ConfigError(f"--augment-strength must be 0 or more (1 = the policy as written), not {strength}")
    if spec is None:
        spec = "none"
    if isinstance(spec, str) and spec in POLICIES:
        name, raw = spec, parse_steps(POLICIES.get(spec).steps)
    else:
        if isinstance(spec, str) and ":" not in spec and "," not in spec and spec not in TRANSFORMS:
            raise ConfigError(
                f"unknown augmentation policy {spec!r}; choose one of: {', '.join(POLICIES.names())}, "
                "or list transforms like 'crop:0.7,hflip,rotate:15'"
            )
        raw = parse_steps(spec)
        name = format_steps(raw)
    steps = [Step(f, TRANSFORMS.get(f).scaled(m, strength)) for f, m in raw]
    return name, [s for s in steps if s.magnitude != TRANSFORMS.get(s.family).identity]


@dataclass(frozen=True)
class Invariances:
    """Declared label-keeping transforms: family → largest safe magnitude, for every class
    (``default``) and per class (``per_class`` replaces the default for that class)."""

    default: dict[str, float]
    per_class: dict[str, dict[str, float]]
    text: str

    def for_class(self, name: str | None) -> dict[str, float]:
        return self.per_class.get(name, self.default) if name is not None else self.default


def _limits(spec: Any) -> dict[str, float]:
    out: dict[str, float] = {}
    for fam, mag in parse_steps(spec, what="--invariances"):
        if fam != TONE and TRANSFORMS.get(fam).unit == "probability":
            mag = 1.0  # a flip declared safe is safe however often it is applied
        out[fam] = mag
    return out


def parse_invariances(spec: Any, classes: list[str] | None = None) -> Invariances | None:
    """``"hflip,rotate:15;6=hflip;9=hflip"`` or a mapping ``{all: [...], "6": [...]}`` → Invariances.

    ``None`` means nothing was declared: policies apply as written."""
    if spec is None or spec == "":
        return None
    if isinstance(spec, str):
        groups = [g.strip() for g in spec.split(";") if g.strip()]
        default_spec: Any = ""
        per: dict[str, Any] = {}
        for g in groups:
            head, eq, rest = g.partition("=")
            if eq:
                for cls in head.split("|"):
                    per[cls.strip()] = rest
            else:
                default_spec = g
        text = spec
    elif isinstance(spec, dict):
        default_spec = spec.get("all", "")
        per = {str(k): v for k, v in spec.items() if k != "all"}
        text = repr(spec)
    else:
        default_spec, per, text = spec, {}, repr(spec)
    if classes is not None:
        unknown = sorted(set(per) - set(classes))
        if unknown:
            raise ConfigError(f"--invariances names classes {unknown} that the data does not have; its classes: {classes}")
    return Invariances(default=_limits(default_spec), per_class={k: _limits(v) for k, v in per.items()}, text=text)


def restrict(steps: list[Step], limits: dict[str, float] | None, size: int) -> tuple[list[Step], list[str]]:
    """The steps that declared invariances allow (magnitudes capped at the declared ones) and a
    note for each step dropped or capped."""
    if limits is None:
        return list(steps), []
    kept, notes = [], []
    for s in steps:
        fam = TRANSFORMS.get(s.family)
        if s.family == "randaugment" and "randaugment" not in limits:
            mags = randaugment_op_magnitudes(int(round(s.magnitude)), size)
            ops = tuple(
                op for op, f in RANDAUGMENT_OPS.items()
                if f is None or (f in limits and (f == TONE or TRANSFORMS.get(f).milder_or_equal(mags[op], limits[f])))
            )
            if ops == ("Identity",):
                notes.append(f"{s.describe()} dropped: none of its ops is declared label-safe")
                continue
            kept.append(Step(s.family, s.magnitude, ops))
            notes.append(f"{s.describe()} limited to {'/'.join(ops)}")
        elif s.family not in limits:
            notes.append(f"{s.describe()} dropped: not declared label-safe")
        elif not fam.milder_or_equal(s.magnitude, limits[s.family]):
            capped = Step(s.family, limits[s.family])
            kept.append(capped)
            notes.append(f"{s.describe()} capped at the declared {capped.describe()}")
        else:
            kept.append(s)
    return kept, notes


def compose(steps: list[Step], size: int) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The random transform of ``steps`` for (3, H, W) uint8 images of side ``size``."""
    if not steps:
        return None
    ops = []
    for s in steps:
        if s.family == "randaugment":
            ops.append(_randaugment(s.magnitude, size, None if s.ops is None else set(s.ops)))
        else:
            ops.append(TRANSFORMS.get(s.family).random(s.magnitude, size))
    return v2.Compose(ops)


class Augmenter:
    """The per-sample augmentation of a run: one pipeline for every class, or one per class
    when invariances are declared per class. Called with the image and its label index."""

    per_class = True

    def __init__(self, shared: Callable | None, pipelines: list[Callable | None] | None = None) -> None:
        self.shared = shared
        self.pipelines = pipelines

    def __call__(self, img: torch.Tensor, label: int | None = None) -> torch.Tensor:
        fn = self.shared if self.pipelines is None or label is None else self.pipelines[label]
        return img if fn is None else fn(img)


@dataclass
class BuiltPolicy:
    name: str
    steps: list[Step]  # for classes without their own declaration
    per_class_steps: dict[str, list[Step]]  # classes whose declared invariances differ
    notes: list[str]
    augmenter: Callable | None

    def describe(self) -> str:
        text = ",".join(s.describe() for s in self.steps) or "none"
        for cls, steps in self.per_class_steps.items():
            text += f"; {cls}: {','.join(s.describe() for s in steps) or 'none'}"
        return text

    def all_steps(self) -> list[Step]:
        """Every step applied to some class (the shared ones and each class's own)."""
        return list(self.steps) + [s for steps in self.per_class_steps.values() for s in steps]


def build_policy(
    spec: Any, size: int, *, strength: float = 1.0, invariances: Invariances | None = None, classes: list[str] | None = None
) -> BuiltPolicy:
    """The augmentation a run applies: the named or written policy at ``strength``, restricted
    by the declared invariances (per class where declared so)."""
    name, steps = policy_steps(spec, strength)
    default_steps, notes = restrict(steps, None if invariances is None else invariances.default, size)
    per_class: dict[str, list[Step]] = {}
    if invariances is not None and invariances.per_class:
        for cls, limits in invariances.per_class.items():
            cls_steps, cls_notes = restrict(steps, limits, size)
            per_class[cls] = cls_steps
            notes += [f"class {cls}: {n}" for n in cls_notes]
    shared = compose(default_steps, size)
    if not per_class:
        augmenter = None if shared is None else Augmenter(shared)
    else:
        assert classes is not None, "per-class invariances need the class names"
        pipelines = [compose(per_class[c], size) if c in per_class else shared for c in classes]
        augmenter = None if all(p is None for p in pipelines) else Augmenter(shared, pipelines)
    return BuiltPolicy(name=name, steps=default_steps, per_class_steps=per_class, notes=notes, augmenter=augmenter)


VIEW_POLICIES = {"plain": "none", "weak": "light", "strong": "strong"}
"""The views a training method may ask of each unlabeled image, by name (``Needs.unlabeled_views``):
the image as stored, a weak view (crop + flip) and a strong one (crop + flip + RandAugment)."""


def view_augmenter(name: str, size: int, *, strength: float = 1.0, invariances: Any = None, classes: list[str] | None = None):
    """The per-image augmentation of the view ``name`` at ``size`` px, under the run's declared
    invariances (``None`` for the plain view)."""
    if name not in VIEW_POLICIES:
        raise ConfigError(f"a training method asks for an unlabeled view {name!r}; the views are {', '.join(VIEW_POLICIES)}")
    return build_policy(VIEW_POLICIES[name], size, strength=strength, invariances=invariances, classes=classes).augmenter

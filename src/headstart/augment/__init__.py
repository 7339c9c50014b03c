"""Augmentation: named policies on ``torchvision.transforms.v2``, declared invariances,
CutMix/MixUp, test-time augmentation, the label-safety audit and a preview sheet."""

from .audit import (
    MAX_DROP,
    audit_families,
    flagged_steps,
    recommended_invariances,
    run_audit,
    unsafe_magnitudes,
)
from .mix import BatchMix, batch_mix
from .policies import (
    POLICIES,
    Augmenter,
    BuiltPolicy,
    Invariances,
    Step,
    build_policy,
    parse_invariances,
    policy_steps,
)
from .preview import contact_sheet, write_sheet
from .transforms import TRANSFORMS, Family, format_steps, parse_steps
from .tta import DEFAULT_VIEWS, View, tta_views

__all__ = [
    "MAX_DROP", "audit_families", "flagged_steps", "recommended_invariances", "run_audit", "unsafe_magnitudes",
    "BatchMix", "batch_mix", "POLICIES", "Augmenter", "BuiltPolicy", "Invariances", "Step", "build_policy",
    "parse_invariances", "policy_steps", "contact_sheet", "write_sheet", "TRANSFORMS", "Family", "format_steps",
    "parse_steps", "DEFAULT_VIEWS", "View", "tta_views",
]

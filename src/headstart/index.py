"""The registry index: every pluggable family in one place, for the command line and docs.

The CLI reads its choices, ``headstart list`` and the help texts from here (and calls the API
for everything else), so a new backbone, strategy, method, policy or CAM method shows up on
the command line without the CLI importing the stage that defines it.
"""

from __future__ import annotations

from .augment.policies import POLICIES
from .augment.transforms import TRANSFORMS
from .backbones import BACKBONES
from .ensemble.rules import RULES
from .explain.cam import CAM_METHODS
from .finetune.strategies import STRATEGIES
from .methods import METHODS, option_help
from .methods.pretext import PRETEXTS
from .registry import Registry

REGISTRIES: dict[str, Registry] = {
    "backbones": BACKBONES,
    "strategies": STRATEGIES,
    "methods": METHODS,
    "policies": POLICIES,
    "transforms": TRANSFORMS,
    "cams": CAM_METHODS,
    "ensemble-rules": RULES,
    "pretext-tasks": PRETEXTS,
}

__all__ = ["BACKBONES", "CAM_METHODS", "METHODS", "POLICIES", "PRETEXTS", "REGISTRIES", "RULES", "STRATEGIES", "TRANSFORMS", "option_help"]

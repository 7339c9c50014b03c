"""Training methods: what one training step computes. One file per method, registered.

Every module in this package is imported here, so a new method is one new file: its
``@METHODS.register("name")`` makes it a ``--method`` choice, a row of ``headstart list methods``
and a case of the contract tests. See ``base.py`` for the protocol.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from .base import Batch, Needs, NoOptions, Setup, TrainingMethod, as_batch, build_options, option_help
from .registry import METHODS
from .supervised import Supervised

for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if not _info.name.startswith("_") and _info.name not in ("base", "registry"):
        importlib.import_module(f"{__name__}.{_info.name}")


def create_method(name: str, model: Any, options: dict[str, Any] | None = None, setup: Setup | None = None) -> TrainingMethod:
    """The registered method ``name`` training ``model``, with its options from ``options``."""
    cls = METHODS.get(name)
    return cls(model, build_options(cls, name, options), setup)


__all__ = [
    "METHODS",
    "Batch",
    "Needs",
    "NoOptions",
    "Setup",
    "Supervised",
    "TrainingMethod",
    "as_batch",
    "build_options",
    "create_method",
    "option_help",
]

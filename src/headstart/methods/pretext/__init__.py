"""Self-supervised pretext tasks: a body trained on images without labels. One file per task.

Every module in this package is imported here, so a new task is one new file: its
``@PRETEXTS.register("name")`` makes it a ``headstart pretrain --method`` choice and a case of
the contract tests. Tasks live in their own registry, never in ``METHODS`` (those train a
classifier). See ``base.py`` for the protocol.
"""

from __future__ import annotations

import importlib
import pkgutil

from .base import EVAL_SEED, PRETEXTS, PretextNet, PretextTask, create_pretext, eval_generator

for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if not _info.name.startswith("_") and _info.name != "base":
        importlib.import_module(f"{__name__}.{_info.name}")

__all__ = ["EVAL_SEED", "PRETEXTS", "PretextNet", "PretextTask", "create_pretext", "eval_generator"]

"""The registry of training methods (``--method NAME``; ``headstart list methods``)."""

from __future__ import annotations

from ..registry import Registry

METHODS: Registry[type] = Registry("method")

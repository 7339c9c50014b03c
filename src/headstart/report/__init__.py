"""Metrics, tables and (later) the HTML report; consumes arrays, never trains."""

from .metrics import classification_metrics

__all__ = ["classification_metrics"]

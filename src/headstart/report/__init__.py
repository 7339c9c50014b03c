"""Metrics, figures and the HTML report; consumes arrays and images, never trains."""

from .html import Section, render
from .metrics import classification_metrics

__all__ = ["Section", "classification_metrics", "render"]

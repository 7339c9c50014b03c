"""Pretrained networks behind one surface: stages, pooled features, a new head, preprocessing."""

from .base import Backbone, Preprocess, normalize_resize
from .weights import load_into, read_state_dict
from .zoo import BACKBONES, BackboneSpec, create_backbone

__all__ = ["BACKBONES", "Backbone", "BackboneSpec", "Preprocess", "create_backbone", "load_into", "normalize_resize", "read_state_dict"]

"""Look inside a trained model: CAMs, weak localization, a bias audit and feature pictures.

Builds on the leaves only (backbones, data, torch, grad-cam, scikit-learn); it never imports the
training engine — callers pass a ``prepare`` function that turns uint8 images into model input.
"""

from .bias import bias_audit, energy_shares, region_masks
from .cam import CAM_METHODS, CamResult, cam_layer_name, compute_cams
from .features import (
    display_images,
    filter_tiles,
    first_conv,
    penultimate,
    project,
    receptive_field,
    stage_index,
    top_patches,
)
from .localize import (
    DEFAULT_THRESHOLD,
    GroundTruth,
    SquareMap,
    box_iou,
    boxes_mask,
    cam_box,
    cam_mask,
    mask_box,
    mask_iou,
    read_ground_truth,
    upright_size,
)
from .pictures import draw_boxes, enlarge, grid, overlay, png_bytes

__all__ = [
    "CAM_METHODS", "CamResult", "DEFAULT_THRESHOLD", "GroundTruth", "SquareMap", "bias_audit", "box_iou", "boxes_mask",
    "cam_box", "cam_layer_name", "cam_mask", "compute_cams", "display_images", "draw_boxes", "energy_shares", "enlarge",
    "filter_tiles", "first_conv", "grid", "mask_box", "mask_iou", "overlay", "penultimate", "png_bytes", "project",
    "read_ground_truth", "receptive_field", "upright_size", "region_masks", "stage_index", "top_patches",
]

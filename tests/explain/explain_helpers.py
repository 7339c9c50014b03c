"""A tiny hand-built backbone: CAM arithmetic can be checked by hand and runs in milliseconds."""

from __future__ import annotations

import torch
from torch import nn

from headstart.backbones import Backbone, Preprocess


def tiny_backbone(num_classes: int = 3, seed: int = 0) -> Backbone:
    torch.manual_seed(seed)
    stages = [
        nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU()),
        nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU()),
        nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.ReLU()),
    ]
    m = Backbone(name="tiny", stages=stages, stage_names=["s0", "s1", "s2"], num_features=16, cam_index=2,
                 preprocess=Preprocess(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), image_size=32), num_classes=num_classes)
    return m.eval()


def prepare_fn(side: int = 32):
    def prepare(x: torch.Tensor) -> torch.Tensor:
        x = (x.float() / 255 - 0.5) / 0.5
        if x.shape[-1] != side:
            x = nn.functional.interpolate(x, size=(side, side), mode="bilinear", align_corners=False)
        return x
    return prepare

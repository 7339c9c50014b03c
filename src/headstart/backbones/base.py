"""The one surface every backbone offers, whatever framework it comes from.

A ``Backbone`` is ``stages`` (an ordered list of modules, input side first) followed by global
average pooling and a linear ``head``. Strategies freeze "the first K stages", the engine caches
the output of the frozen prefix, Grad-CAM hooks ``cam_layer``, and a saved run records
``preprocess`` — so nothing downstream ever special-cases an architecture.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class Preprocess:
    """How pixels must be prepared for these weights (recorded in every run).

    ``mean``/``std`` apply to RGB values scaled to [0, 1]. ``image_size`` is the side the
    weights were trained at; runs may use a smaller one to save CPU time (the choice and its
    reason are recorded in the run's config).
    """

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    image_size: int = 224
    interpolation: str = "bilinear"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Preprocess":
        return cls(
            mean=tuple(d["mean"]),
            std=tuple(d["std"]),
            image_size=int(d["image_size"]),
            interpolation=d.get("interpolation", "bilinear"),
        )


def normalize_resize(x: torch.Tensor, mean255: torch.Tensor, std255: torch.Tensor, size: int, mode: str) -> torch.Tensor:
    """uint8 (N, 3, H, W) pixels → normalised floats at ``size`` × ``size``, channels-last
    (``mean255``/``std255``: (1, 3, 1, 1) on the pixels' scale). Normalising first, on the
    smaller image, commutes with the interpolation (its weights sum to one) and costs less;
    downsampling is antialiased."""
    x = (x.float() - mean255) / std255
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode=mode, align_corners=False, antialias=x.shape[-1] > size)
    return x.contiguous(memory_format=torch.channels_last)


IMAGENET = dict(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))


@dataclass
class BackboneInfo:
    """What the registry knows about an entry before building it."""

    name: str
    family: str
    description: str
    default_weights: str | None = None  # a path known to hold real weights, or None
    notes: list[str] = field(default_factory=list)


class Backbone(nn.Module):
    """Pretrained body split into stages, pooled features, and a replaceable head.

    Args:
        name: registry name of the architecture.
        stages: modules applied in order; the last one yields a feature map (N, C, H, W) or an
            already-flat vector (N, D) (AlexNet/VGG keep their pretrained fully connected
            layers as a final stage).
        stage_names: a short name per stage, shown in summaries.
        num_features: D, the width of the pooled feature vector.
        cam_index: the stage whose output Grad-CAM should use: the last one with a spatial
            map, because the stages after it have no location left to explain.
        preprocess: pixel preparation that matches the weights.
        num_classes: width of the new head.
        drop_rate: dropout before the head (0 keeps the head a plain linear probe).
    """

    def __init__(
        self,
        *,
        name: str,
        stages: Sequence[nn.Module],
        stage_names: Sequence[str],
        num_features: int,
        cam_index: int,
        preprocess: Preprocess,
        num_classes: int = 1000,
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if len(stages) != len(stage_names):
            raise ValueError("one name per stage is required")
        self.name = name
        self.stages = nn.ModuleList(stages)
        self.stage_names = list(stage_names)
        self.num_features = num_features
        self.cam_index = cam_index
        self.preprocess = preprocess
        self.drop = nn.Dropout(drop_rate) if drop_rate > 0 else nn.Identity()
        self.head: nn.Module = nn.Linear(num_features, num_classes)
        self.frozen_stages = 0
        self.weights_source = "random initialisation"
        self.pretrained = False

    # -- forward pieces -------------------------------------------------------------------
    @staticmethod
    def pool(x: torch.Tensor) -> torch.Tensor:
        """Global average pool a feature map; a flat vector passes through."""
        return x.mean(dim=(2, 3)) if x.dim() == 4 else x

    def forward_stages(self, x: torch.Tensor, start: int = 0, end: int | None = None) -> torch.Tensor:
        """Run stages ``start`` .. ``end``-1 (the engine caches the frozen prefix this way)."""
        for stage in self.stages[start:end]:
            x = stage(x)
        return x

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled penultimate features (N, num_features)."""
        return self.pool(self.forward_stages(x))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    # -- transfer surface -----------------------------------------------------------------
    def reset_head(self, num_classes: int) -> None:
        """A fresh linear head for the user's classes (small init, so early logits are calm)."""
        head = nn.Linear(self.num_features, num_classes)
        nn.init.normal_(head.weight, std=0.01)
        nn.init.zeros_(head.bias)
        self.head = head

    @property
    def cam_layer(self) -> nn.Module:
        return self.stages[self.cam_index]

    @property
    def num_stages(self) -> int:
        return len(self.stages)

    def freeze(self, num_stages: int) -> None:
        """Freeze the first ``num_stages`` stages: no gradients, BatchNorm in inference mode.

        Frozen BatchNorm layers keep their ImageNet running statistics; updating them from a
        few hundred images of another domain would shift every later activation while the
        weights that expect the old statistics cannot adapt.
        """
        if not 0 <= num_stages <= self.num_stages:
            raise ValueError(f"can freeze 0..{self.num_stages} stages of {self.name}, not {num_stages}")
        self.frozen_stages = num_stages
        for i, stage in enumerate(self.stages):
            stage.requires_grad_(i >= num_stages)
        self.train(self.training)

    def train(self, mode: bool = True) -> "Backbone":
        super().train(mode)
        for stage in self.stages[: self.frozen_stages]:
            stage.eval()
        return self

    def stage_parameter_counts(self) -> list[tuple[str, int]]:
        rows = [(n, sum(p.numel() for p in s.parameters())) for n, s in zip(self.stage_names, self.stages)]
        rows.append(("head", sum(p.numel() for p in self.head.parameters())))
        return rows

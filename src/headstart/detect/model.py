"""The detection network: a registered backbone's stage outputs, a feature pyramid, and one of
torchvision's detectors on top (seed 002: Faster R-CNN fine-tuned on a pretrained body).

The body is any :class:`~headstart.backbones.Backbone` whose stages give feature maps: the last
stage at each stride (measured on a probe image, as the segmenter's skips are) feeds
torchvision's ``FeaturePyramidNetwork``, which brings every level to ``FPN_CHANNELS`` channels
and adds a top-down path. Freezing works as for a classifier (``Backbone.freeze``), so the
strategies and the advisor's freeze depth apply to the body unchanged.

Two detectors, behind ``--detector``:

- ``fasterrcnn`` (Ren et al. 2015): levels at strides 4–32 and a max-pooled level at 64; a
  region-proposal network with anchors of 4 × each level's stride (16–256 px) at aspect ratios
  1:2, 1:1, 2:1; RoIAlign 7 × 7 on the proposals, a two-layer head of ``BOX_HEAD`` units.
- ``fcos`` (Tian et al. 2019): anchor-free, levels at strides 8–32 plus P6/P7; one prediction
  per location, no proposal stage.

Both are torchvision's own (losses, box coding, matching, NMS), sized for the small images and
few objects this product sees: fewer proposals than the COCO defaults (``PROPOSALS``), a
narrower pyramid and box head. torchvision's input transform is told not to resize or
normalise again: images arrive at the run's square size, already normalised by the loop's
``Prepare`` (the same preprocessing as every other run).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
from torch import nn

from ..backbones.base import Backbone
from ..segment.model import PROBE_SIZE, skip_indices, stage_strides

DETECTORS = ("fasterrcnn", "fcos")
FPN_CHANNELS = 64
"""Channels of every pyramid level: 64 instead of torchvision's 256 costs little on a few
classes and small images and keeps a training step on 2 CPU cores in the hundreds of ms."""
BOX_HEAD = 256
"""Units of Faster R-CNN's two-layer box head (torchvision: 1024)."""
PROPOSALS = {"pre_train": 600, "post_train": 300, "pre_test": 300, "post_test": 100}
"""Region proposals kept before and after NMS, per image (torchvision: 2000/2000, 1000/1000)."""
ROI_SAMPLES = 64
"""Proposals per image that train Faster R-CNN's box head (a quarter of them objects at most;
torchvision: 512). Few objects per image need few samples, and RoIAlign's backward pass is most
of a step's time on a CPU: 64 instead of 128 takes a step from 1.19 to 0.73 s (16 images at
128 px, Lite0, 2 cores)."""
MAX_DETECTIONS = 50
"""Boxes kept per image after NMS."""
SCORE_FLOOR = 0.05
"""Detections below this score are dropped (mAP counts the rest, ranked)."""


class BodyFPN(nn.Module):
    """A backbone's stages at ``levels`` (stage indices, shallowest first) → a feature pyramid:
    ``OrderedDict`` of maps, each ``FPN_CHANNELS`` wide (what torchvision's detectors take)."""

    def __init__(self, backbone: Backbone, levels: list[int], channels: list[int], *, extra: str, out_channels: int = FPN_CHANNELS) -> None:
        super().__init__()
        from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork, LastLevelMaxPool, LastLevelP6P7

        self.backbone = backbone
        self.levels = list(levels)
        blocks = LastLevelMaxPool() if extra == "pool" else LastLevelP6P7(out_channels, out_channels)
        self.fpn = FeaturePyramidNetwork(channels, out_channels, extra_blocks=blocks)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        feats: OrderedDict[str, torch.Tensor] = OrderedDict()
        wanted = set(self.levels)
        for i, stage in enumerate(self.backbone.stages[: self.levels[-1] + 1]):
            x = stage(x)
            if i in wanted:
                feats[str(i)] = x
        return self.fpn(feats)


def pyramid_levels(backbone: Backbone, min_stride: int, probe_size: int = PROBE_SIZE) -> tuple[list[int], list[int], list[int]]:
    """(stage indices, their strides, their channels) of the last stage at each stride of at
    least ``min_stride``, shallowest first."""
    strides = stage_strides(backbone, probe_size)
    levels = [i for i in skip_indices(strides) if strides[i][0] >= min_stride]  # type: ignore[index]
    if not levels:
        raise ValueError(f"{backbone.name} has no stage at stride {min_stride} or more to detect from")
    return levels, [strides[i][0] for i in levels], [strides[i][1] for i in levels]  # type: ignore[index]


class Detector(nn.Module):
    """A backbone with a feature pyramid and a torchvision detector: ``forward(images, targets)``.

    ``images`` (N, 3, S, S) prepared (normalised) and ``targets`` a list of ``{"boxes": (k, 4)
    x0 y0 x1 y1 pixels, "labels": (k,) 0-based}`` give the loss dict in training mode; in eval
    mode, a list of ``{"boxes", "scores", "labels"}`` (0-based labels), boxes in the input's
    pixels. ``backbone.head`` takes no part (it is set not to train)."""

    def __init__(self, backbone: Backbone, num_classes: int, *, detector: str = "fasterrcnn", image_size: int = 128,
                 levels: list[int] | None = None, probe_size: int = PROBE_SIZE) -> None:
        super().__init__()
        from torchvision.models import detection as tvd
        from torchvision.models.detection.anchor_utils import AnchorGenerator
        from torchvision.ops import MultiScaleRoIAlign

        if detector not in DETECTORS:
            raise ValueError(f"detector must be one of {DETECTORS}, got {detector!r}")
        self.detector = detector
        self.num_classes = num_classes
        self.image_size = image_size
        backbone.head.requires_grad_(False)
        min_stride = 4 if detector == "fasterrcnn" else 8
        found, strides, channels = pyramid_levels(backbone, min_stride, probe_size)
        if levels is not None:
            by_index = dict(zip(found, zip(strides, channels)))
            if any(i not in by_index for i in levels):
                raise ValueError(f"levels {levels} are not feature-map stages of {backbone.name} at stride ≥ {min_stride}: {found}")
            strides, channels = [by_index[i][0] for i in levels], [by_index[i][1] for i in levels]
            found = list(levels)
        self.levels = found
        self.strides = strides
        body = BodyFPN(backbone, found, channels, extra="pool" if detector == "fasterrcnn" else "p6p7")
        common: dict[str, Any] = dict(min_size=image_size, max_size=image_size, image_mean=[0.0, 0.0, 0.0], image_std=[1.0, 1.0, 1.0])
        if detector == "fasterrcnn":
            all_strides = strides + [strides[-1] * 2]  # the pooled level
            anchors = AnchorGenerator(sizes=tuple((4 * s,) for s in all_strides), aspect_ratios=((0.5, 1.0, 2.0),) * len(all_strides))
            pool = MultiScaleRoIAlign(featmap_names=[str(i) for i in found], output_size=7, sampling_ratio=2)
            head = tvd.faster_rcnn.TwoMLPHead(body.out_channels * 7 * 7, BOX_HEAD)
            predictor = tvd.faster_rcnn.FastRCNNPredictor(BOX_HEAD, num_classes + 1)
            self.net: nn.Module = tvd.FasterRCNN(
                body, rpn_anchor_generator=anchors, box_roi_pool=pool, box_head=head, box_predictor=predictor,
                rpn_pre_nms_top_n_train=PROPOSALS["pre_train"], rpn_post_nms_top_n_train=PROPOSALS["post_train"],
                rpn_pre_nms_top_n_test=PROPOSALS["pre_test"], rpn_post_nms_top_n_test=PROPOSALS["post_test"],
                box_batch_size_per_image=ROI_SAMPLES, box_detections_per_img=MAX_DETECTIONS, box_score_thresh=SCORE_FLOOR, **common)
        else:
            all_strides = strides + [strides[-1] * 2, strides[-1] * 4]  # P6, P7
            anchors = AnchorGenerator(sizes=tuple((s,) for s in all_strides), aspect_ratios=((1.0,),) * len(all_strides))
            head = tvd.fcos.FCOSHead(body.out_channels, anchors.num_anchors_per_location()[0], num_classes + 1, num_convs=2)
            self.net = tvd.FCOS(body, num_classes + 1, anchor_generator=anchors, head=head, score_thresh=SCORE_FLOOR,
                                detections_per_img=MAX_DETECTIONS, topk_candidates=300, **common)

    @property
    def backbone(self) -> Backbone:
        """The body (held once, inside ``net``: the saved weights name each tensor once)."""
        return self.net.backbone.backbone

    @property
    def level_names(self) -> list[str]:
        return [self.backbone.stage_names[i] for i in self.levels]

    def forward(self, images: torch.Tensor, targets: list[dict[str, torch.Tensor]] | None = None) -> Any:
        # torchvision's detectors index classes from 1 (0 is background): shifted here and back
        shifted = None if targets is None else [{"boxes": t["boxes"], "labels": t["labels"] + 1} for t in targets]
        out = self.net(list(images), shifted)
        if self.training:
            return out
        return [{"boxes": d["boxes"], "scores": d["scores"], "labels": d["labels"] - 1} for d in out]

    def parameter_counts(self) -> dict[str, int]:
        body = sum(p.numel() for s in self.backbone.stages[: self.levels[-1] + 1] for p in s.parameters())
        rest = sum(p.numel() for n, p in self.named_parameters() if not n.startswith("net.backbone.backbone."))
        return {"body": body, "detector": rest, "total": body + rest}

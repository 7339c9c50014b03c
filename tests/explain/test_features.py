"""Feature pictures: filter tiles, receptive fields, projections and activating patches on models
whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from explain_helpers import prepare_fn
from torch import nn

from headstart.backbones import Backbone, Preprocess
from headstart.errors import HeadstartError
from headstart.explain import (
    filter_tiles,
    first_conv,
    project,
    receptive_field,
    stage_index,
    top_patches,
)
from headstart.explain.features import patch_stage


def test_filter_tiles_scale_each_filter_around_grey():
    w = torch.zeros(2, 3, 3, 3)
    w[0, 0, 1, 1] = 0.5  # one positive red weight
    w[1, :, 0, 0] = -2.0  # negative grey corner
    t = filter_tiles(w)
    assert t.shape == (2, 3, 3, 3) and t.dtype == np.uint8
    assert t[0, 1, 1].tolist() == [255, 128, 128] and t[0, 0, 0].tolist() == [128, 128, 128]
    assert t[1, 0, 0].tolist() == [0, 0, 0]
    g = filter_tiles(torch.ones(4, 5, 3, 3))  # 5 input channels → grey mean
    assert g.shape == (4, 3, 3, 3) and (g == 255).all()


def test_first_conv_and_stage_lookup(tiny):
    name, conv = first_conv(tiny)
    assert name == "stages.0.0" and conv.out_channels == 8
    assert stage_index(tiny, "s1") == 1 and stage_index(tiny, 2) == 2 and stage_index(tiny, "-1") == 2
    with pytest.raises(HeadstartError, match="no stage 'x'.*s0, s1, s2"):
        stage_index(tiny, "x")
    with pytest.raises(HeadstartError, match="0..2"):
        stage_index(tiny, 5)


def test_receptive_fields_follow_the_convolution_arithmetic(tiny):
    # 3×3 → 3; then a 3×3 stride-2 conv → 3 + 2 = 5; then 3×3 at stride 2 → 5 + 2·2 = 9.
    got = [receptive_field(tiny, i, 32, torch.device("cpu")) for i in range(3)]
    assert got == [(3, 1), (5, 2), (9, 2)]
    assert patch_stage(tiny, 32, torch.device("cpu")) == 2
    assert patch_stage(tiny, 12, torch.device("cpu")) == 1  # 9 px > 2/3 of 12
    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    assert top_patches(tiny, prepare_fn(12), images, k=2).layer == "s1"  # no layer given: patch_stage's choice


def _red_detector() -> Backbone:
    """Stage 0: channel 0 = red − mean(green, blue) over a 3×3 window (a red-spot detector)."""
    conv = nn.Conv2d(3, 2, 3, padding=1, bias=False)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0] = 1.0
        conv.weight[0, 1:] = -0.5
        conv.weight[1] = 0.01
    m = Backbone(name="red", stages=[conv, nn.Conv2d(2, 2, 1)], stage_names=["detect", "mix"], num_features=2, cam_index=1,
                 preprocess=Preprocess(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), image_size=32), num_classes=2)
    return m.eval()


def test_top_patches_find_the_images_with_the_reddest_spots_where_they_are():
    rng = np.random.default_rng(0)
    images = torch.from_numpy((rng.random((12, 3, 32, 32)) * 40).astype(np.uint8))
    spots = {3: (5, 7, 250), 8: (20, 24, 200), 10: (28, 2, 150)}  # image: (y, x, red)
    for i, (y, x, v) in spots.items():
        images[i, 0, y - 1 : y + 2, x - 1 : x + 2] = v
    p = top_patches(_red_detector(), lambda x: x.float() / 255, images, layer="detect", channel=0, k=3)
    assert p.indices.tolist() == [3, 8, 10]
    assert p.layer == "detect" and p.channel == 0 and p.patch == 3 and p.stride == 1
    for (x0, y0, x1, y1), i, crop in zip(p.boxes, p.indices, p.crops):
        y, x, v = spots[int(i)]
        assert x0 <= x < x1 and y0 <= y < y1 and crop.shape == (3, 3, 3) and crop[..., 0].max() == v
    assert np.all(np.diff(p.values) <= 0)
    with pytest.raises(HeadstartError, match="channels 0..1"):
        top_patches(_red_detector(), lambda x: x.float() / 255, images, layer="detect", channel=5)


def test_default_channel_is_the_most_active_and_patches_stay_inside_the_image(tiny):
    images = torch.randint(0, 256, (10, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    prep = prepare_fn()
    p = top_patches(tiny, prep, images, layer="s2", k=4)
    with torch.no_grad():
        means = tiny.forward_stages(prep(images), 0, 3).mean(dim=(0, 2, 3))
    assert p.channel == int(means.argmax())
    assert ((p.boxes >= 0) & (p.boxes <= 32)).all() and (p.boxes[:, 2] - p.boxes[:, 0] == 9).all()


def test_projections_separate_separable_features():
    rng = np.random.default_rng(0)
    feats = np.concatenate([rng.normal(0, 1, (30, 20)), rng.normal(8, 1, (30, 20))])
    out = project(feats)
    assert out["pca"].shape == (60, 2) and out["tsne"].shape == (60, 2)
    for key in ("pca", "tsne"):
        a, b = out[key][:30], out[key][30:]
        gap = np.linalg.norm(a.mean(0) - b.mean(0))
        assert gap > 2 * max(a.std(0).max(), b.std(0).max())
    assert out["pca_variance"][0] > 0.5
    with pytest.raises(HeadstartError, match="at least 3"):
        project(feats[:2])

"""``--freeze-stages auto`` for dense tasks: the pixel probe reads each stage at the sampled
pixels exactly as a hand loop does, boxes become label maps with the smallest box on top, and
the chosen depth is the classifier advisor's rule applied to the measured curve."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from headstart.advise.dense import PIXELS_PER_IMAGE, boxes_label_map, pixel_probe, sample_pixels
from headstart.advise.measure import probe_accuracy
from headstart.advise.rules import freeze_from_probe
from headstart.backbones import create_backbone


def test_boxes_become_label_maps_with_the_smallest_box_on_top():
    m = boxes_label_map(torch.tensor([[0.0, 0, 8, 8], [2, 2, 4, 4]]), torch.tensor([0, 2]), 10)
    assert m[0, 0] == 1 and m[3, 3] == 3 and m[9, 9] == 0 and (m == 3).sum() == 4 and (m == 1).sum() == 60
    m = boxes_label_map(torch.tensor([[2.0, 2, 4, 4], [0, 0, 8, 8]]), torch.tensor([2, 0]), 10)  # order given does not matter
    assert m[3, 3] == 3


def test_pixels_are_drawn_half_on_objects_and_never_ignored():
    m = np.zeros((20, 20), np.uint8)
    m[:5, :5] = 2
    m[10:, 10:] = 255
    ys, xs = sample_pixels(m, 16, np.random.default_rng(0))
    vals = m[ys, xs]
    assert len(vals) == 16 and (vals == 2).sum() == 8 and (vals == 0).sum() == 8
    only = np.full((4, 4), 1, np.uint8)
    assert (only[sample_pixels(only, 6, np.random.default_rng(0))] == 1).sum() == 6  # no background: all on objects


def test_the_probe_reads_each_stage_at_the_sampled_pixels_like_a_hand_loop():
    torch.manual_seed(0)
    body = create_backbone("resnet_small", num_classes=1, weights=None).eval()
    rng = np.random.default_rng(1)
    n, side = 12, 32
    images = torch.from_numpy(rng.integers(0, 255, (n, 3, side, side)).astype(np.uint8))
    maps = np.zeros((n, side, side), np.uint8)
    for i in range(n):
        maps[i, 4:20, 4:20] = 1 + i % 3
        images[i, :, 4:20, 4:20] = 40 * (1 + i % 3)
    prepare = lambda x: x.float() / 255  # noqa: E731
    got, pixels = pixel_probe(body, images, maps, prepare, seed=0)
    # the same draws by hand
    r = np.random.default_rng(0)
    chosen = np.sort(r.choice(n, n, replace=False))
    points = [sample_pixels(maps[i], PIXELS_PER_IMAGE, r) for i in chosen]
    labels = np.concatenate([maps[i][ys, xs] for i, (ys, xs) in zip(chosen, points)])
    assert pixels == len(labels) == n * PIXELS_PER_IMAGE
    x = prepare(images[torch.as_tensor(chosen)])
    with torch.no_grad():
        for s, stage in enumerate(body.stages):
            x = stage(x)
            h = x.shape[-1]
            rows = [x[k, :, int(y) * h // side, int(xx) * h // side].numpy() for k, (ys, xs) in enumerate(points) for y, xx in zip(ys, xs)]
            want = probe_accuracy(np.stack(rows), labels.astype(np.int64), seed=0, max_folds=3)
            assert got[s] == pytest.approx(want), s
    assert len(got) == body.num_stages and all(0 <= g <= 1 for g in got)


@pytest.mark.slow
def test_auto_freezes_by_the_probe_on_a_pretrained_body(tmp_path):
    import csv

    from PIL import Image

    from headstart import api

    data = tmp_path / "d"
    data.mkdir()
    rng = np.random.default_rng(0)
    rows = [["path", "x0", "y0", "x1", "y1", "label"]]
    for i in range(24):
        img = rng.integers(90, 150, (60, 80, 3)).astype(np.uint8)
        x, y = int(rng.integers(0, 55)), int(rng.integers(0, 35))
        img[y : y + 20, x : x + 20] = 250 if i % 2 else 10
        Image.fromarray(img).save(data / f"{i}.png")
        rows.append([f"{i}.png", x, y, x + 20, y + 20, "light" if i % 2 else "dark"])
    with (data / "boxes.csv").open("w", newline="") as f:
        csv.writer(f).writerows(rows)
    m = api.detect_train(str(data), output=tmp_path / "r", backbone="efficientnet_lite0", image_size=64, epochs=1, freeze_stages="auto",
                         progress=False, device="cpu")
    probe = m["freeze_probe"]
    assert len(probe) == 9 and all(p is not None for p in probe)
    import json

    frozen = json.loads((tmp_path / "r" / "model.json").read_text())["frozen_stages"]
    assert frozen == freeze_from_probe(probe, 9).value
    assert "linear probe of each stage" in m["reasons"]["freeze_stages"]

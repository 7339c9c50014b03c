"""The detection network and its batches: pyramid levels by measured stride, labels shifted for
torchvision and back, boxes in the input's pixels, flips that keep each box on its object, and
a toy problem learned by both detectors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from headstart.backbones import create_backbone
from headstart.detect.method import BoxAugment, BoxBatches, DetectionMethod, pad_boxes, unpad
from headstart.detect.metrics import top_box_hit
from headstart.detect.model import Detector, pyramid_levels
from headstart.methods.base import Batch


def small(seed=0):
    torch.manual_seed(seed)
    return create_backbone("resnet_small", num_classes=1, weights=None)


def test_pyramid_levels_are_the_last_stage_at_each_stride():
    b = small()
    assert pyramid_levels(b, 2) == ([2, 3, 4], [2, 4, 8], [32, 64, 128])
    assert pyramid_levels(b, 4)[0] == [3, 4]
    d = Detector(small(), 3, detector="fasterrcnn", image_size=64)
    assert d.level_names == ["block3", "block4"] and d.strides == [4, 8]
    f = Detector(small(), 3, detector="fcos", image_size=64)
    assert f.level_names == ["block4"] and f.strides == [8]
    with pytest.raises(ValueError, match="not feature-map stages"):
        Detector(small(), 3, levels=[0, 1])
    with pytest.raises(ValueError, match="detector must be one of"):
        Detector(small(), 3, detector="yolo")


def test_each_tensor_is_saved_once():
    d = Detector(small(), 3)
    keys = list(d.state_dict())
    assert not any(k.startswith("backbone.") for k in keys)  # the body lives inside ``net`` only
    assert sum(k.startswith("net.backbone.backbone.stages") for k in keys) > 0
    counts = d.parameter_counts()
    assert counts["total"] == counts["body"] + counts["detector"]
    assert counts["detector"] == sum(p.numel() for n, p in d.named_parameters() if not n.startswith("net.backbone.backbone."))


def test_padding_round_trips_and_flips_mirror_boxes_with_their_objects():
    boxes = [torch.tensor([[1.0, 2, 5, 6]]), torch.zeros(0, 4), torch.tensor([[0.0, 0, 3, 3], [4, 4, 8, 8]])]
    labels = [torch.tensor([2]), torch.zeros(0, dtype=torch.long), torch.tensor([0, 1])]
    pb, pl = pad_boxes(boxes, labels)
    assert pb.shape == (3, 2, 4) and pl.tolist() == [[2, -1], [-1, -1], [0, 1]]
    back = unpad(Batch(images=torch.zeros(3, 3, 8, 8), extras={"boxes": pb, "box_labels": pl}))
    for got, b, lab in zip(back, boxes, labels):
        torch.testing.assert_close(got["boxes"], b)
        assert got["labels"].tolist() == lab.tolist()
    img = torch.zeros(3, 20, 30, dtype=torch.uint8)
    img[:, 4:10, 3:9] = 255  # an object at x 3..9, y 4..10
    box = torch.tensor([[3.0, 4, 9, 10]])
    torch.manual_seed(0)
    flips = 0
    for _ in range(20):
        out, b = BoxAugment(jitter=0.0)(img, box)
        x0, y0, x1, y1 = (int(v) for v in b[0].tolist())
        assert out[:, y0:y1, x0:x1].min() == 255 and int(out.float().sum()) == int(img.float().sum())  # the object is all inside its box
        flips += int(x0 != 3)
    assert 3 < flips < 17


def toy(n=24, size=64, seed=0):
    """A bright square (class 0) or a dark disc-ish blob (class 1) at a random place on noise."""
    rng = np.random.default_rng(seed)
    images, boxes, labels = [], [], []
    for i in range(n):
        img = rng.integers(90, 150, (size, size, 3)).astype(np.uint8)
        s = int(rng.integers(14, 24))
        x, y = (int(v) for v in rng.integers(0, size - s, 2))
        c = i % 2
        img[y : y + s, x : x + s] = 250 if c == 0 else 10
        images.append(torch.from_numpy(img).permute(2, 0, 1))
        boxes.append(torch.tensor([[x, y, x + s, y + s]], dtype=torch.float32))
        labels.append(torch.tensor([c]))
    return torch.stack(images), boxes, labels


@pytest.mark.parametrize("kind,epochs", [("fasterrcnn", 30), ("fcos", 60)])
def test_both_detectors_learn_a_toy_problem(kind, epochs):
    images, boxes, labels = toy(n=16)
    torch.manual_seed(0)
    model = Detector(small(), 2, detector=kind, image_size=64)
    method = DetectionMethod(model)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    batches = BoxBatches(images, boxes, labels, batch_size=8, shuffle=True, seed=0)
    norm = lambda x: (x.float() / 255 - 0.5) / 0.25  # noqa: E731
    model.train()
    first = last = None
    for epoch in range(epochs):
        for raw in batches:
            out = method.step(raw.map_images(norm))
            opt.zero_grad()
            out["loss"].backward()
            opt.step()
            last = float(out["loss"].detach())
            first = first if first is not None else last
    assert last < 0.6 * first, (first, last)
    model.eval()
    with torch.no_grad():
        dets = model(norm(images))
    hits = [top_box_hit(d, {"boxes": b, "labels": lab}, same_class=True) for d, b, lab in zip(dets, boxes, labels)]
    assert np.mean(hits) >= 0.75, np.mean(hits)
    for d in dets:
        assert (d["labels"] >= 0).all() and (d["labels"] < 2).all()  # 0-based, background never returned
        assert (d["boxes"] >= 0).all() and (d["boxes"] <= 64).all()

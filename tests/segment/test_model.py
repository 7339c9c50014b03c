"""The segmentation network: skips picked by measured stride, the output size for odd inputs,
the transposed conv's bilinear start equal to bilinear interpolation, and both upsamplings
learning a toy problem."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from headstart.backbones import create_backbone
from headstart.segment.losses import segmentation_loss
from headstart.segment.model import Segmenter, Up, bilinear_kernel, skip_indices, stage_strides


def small(seed=0):
    torch.manual_seed(seed)
    return create_backbone("resnet_small", num_classes=1, weights=None)


def test_the_last_stage_at_each_stride_is_a_skip():
    assert skip_indices([(2, 8), (2, 16), (4, 24), None]) == [1, 2]
    assert skip_indices([(1, 8), (1, 16), (2, 32), (4, 64), (8, 128)]) == [2, 3, 4]
    with pytest.raises(ValueError):
        skip_indices([None, None])
    b = small()
    strides = stage_strides(b)
    assert [s[0] for s in strides] == [1, 1, 2, 4, 8]
    assert Segmenter(b, 3).skip_names == ["block2", "block3", "block4"]


@pytest.mark.parametrize("upsample", ["bilinear", "transposed"])
@pytest.mark.parametrize("side", [32, 31, 17, 45])
def test_logits_have_the_input_size_for_odd_sizes(upsample, side):
    model = Segmenter(small(), 4, upsample=upsample).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, side, side + 3))
    assert out.shape == (2, 4, side, side + 3)


def test_both_upsamplings_have_the_same_widths():
    a, b = Segmenter(small(), 3, upsample="bilinear"), Segmenter(small(), 3, upsample="transposed")
    widths = lambda m: [mod.out_channels for mod in m.decoder.modules() if isinstance(mod, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    assert widths(a) == widths(b)
    kinds = {type(m.conv).__name__ for m in b.decoder.modules() if isinstance(m, Up)}
    assert kinds == {"ConvTranspose2d"}
    t = next(m.conv for m in b.decoder.modules() if isinstance(m, Up))
    assert t.kernel_size[0] % t.stride[0] == 0  # kernel divisible by stride: no checkerboard by construction


def test_the_bilinear_start_of_a_transposed_conv_is_bilinear_upsampling():
    up = Up(5, 5, "transposed", bilinear_init=True)
    x = torch.randn(2, 5, 7, 9)
    y = up.conv(x)
    want = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    # equal away from the border (the transposed conv pads with zeros where interpolation clamps)
    torch.testing.assert_close(y[..., 1:-1, 1:-1], want[..., 1:-1, 1:-1], rtol=1e-5, atol=1e-5)
    k = bilinear_kernel(4)
    torch.testing.assert_close(k[0], torch.tensor([0.0625, 0.1875, 0.1875, 0.0625]))


def toy(n=24, side=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, side, side, generator=g) * 0.2
    y = torch.zeros(n, side, side, dtype=torch.long)
    for i in range(n):
        r, c = torch.randint(0, side - 8, (2,), generator=g).tolist()
        x[i, :, r : r + 8, c : c + 8] += 0.8
        y[i, r : r + 8, c : c + 8] = 1
    return x, y


@pytest.mark.parametrize("upsample", ["bilinear", "transposed"])
def test_both_upsamplings_learn_a_toy_problem(upsample):
    x, y = toy()
    model = Segmenter(small(1), 2, upsample=upsample)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(60):
        opt.zero_grad()
        segmentation_loss(model(x), y)["loss"].backward()
        opt.step()
    model.eval()
    xt, yt = toy(seed=1)
    with torch.no_grad():
        pred = model(xt).argmax(1)
    inter = ((pred == 1) & (yt == 1)).sum().item()
    union = ((pred == 1) | (yt == 1)).sum().item()
    assert inter / union > 0.7, inter / union


def test_the_encoder_runs_no_stage_past_the_deepest_skip():
    b = create_backbone("efficientnet_lite0", num_classes=1, weights=None)
    m = Segmenter(b, 2)
    calls = []
    b.stages[-1].register_forward_hook(lambda *a: calls.append(1))
    m.eval()(torch.randn(1, 3, 64, 64))
    assert m.skips[-1] == b.num_stages - 1 and calls  # conv_head is the last stride-32 stage
    m2 = Segmenter(b, 2, skips=[1, 2, 3])
    calls.clear()
    m2.eval()(torch.randn(1, 3, 64, 64))
    assert not calls


def test_validation_miou_from_summed_counts_equals_the_set_level_miou():
    from headstart.methods.base import Batch
    from headstart.segment.masks import IGNORE
    from headstart.segment.method import SegmentationMethod
    from headstart.segment.metrics import confusion, region_scores

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 4, 6, 5, generator=g)
    target = torch.randint(0, 3, (3, 6, 5), generator=g)
    target[0, 0] = IGNORE

    class Fixed(torch.nn.Module):  # a segmenter whose logits are given
        num_classes = 4

        def forward(self, x):
            return logits

    method = SegmentationMethod(Fixed())
    sums = {k: float(v) for k, v in method.eval_step(Batch(images=torch.zeros(3, 3, 6, 5), labels=target)).items()}
    got = method.score(sums)
    ref = region_scores(confusion(logits.argmax(1), target, 4))
    assert got["val_miou"] == pytest.approx(ref["miou"]) and got["val_pixel_acc"] == pytest.approx(ref["pixel_accuracy"])

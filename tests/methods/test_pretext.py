"""Pretext tasks (``methods/pretext``): each task's pure pieces against naive references, and a
contract over every ``PRETEXTS`` entry on a tiny real backbone (``resnet_small``, 32 px)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from headstart.backbones import Backbone, Preprocess, create_backbone
from headstart.backbones.decoder import LightDecoder, blocks_for
from headstart.errors import ConfigError
from headstart.methods import METHODS, build_options
from headstart.methods.base import Batch
from headstart.methods.pretext import PRETEXTS, PretextTask, create_pretext
from headstart.methods.pretext.dae import DAEOptions, corrupt, masked_cells, reconstruction_error
from headstart.methods.pretext.exemplar import ExemplarOptions, crop_resize, nt_xent, positive_is_nearest, random_view
from headstart.methods.pretext.patch import PatchOptions, cut_patches, drop_color, patch_geometry, patch_positions
from headstart.methods.pretext.rotation import RotationOptions, rotation_batch


@pytest.fixture(autouse=True)
def _one_thread():
    """One thread: these tensors are too small to gain from a second, which on a busy machine
    only waits for the first."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# -- rotation ---------------------------------------------------------------------------------


def test_rotation_batch_turns_every_image_four_ways_like_numpy():
    x = torch.randn(3, 3, 5, 5, generator=torch.Generator().manual_seed(0))
    images, labels = rotation_batch(x)
    assert images.shape == (12, 3, 5, 5)
    arr = x.numpy()
    for k in range(4):
        for i in range(3):
            assert labels[k * 3 + i].item() == k
            np.testing.assert_array_equal(images[k * 3 + i].numpy(), np.rot90(arr[i], k, axes=(1, 2)))


def test_rotation_batch_one_random_turn_per_image():
    x = torch.randn(40, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    images, labels = rotation_batch(x, all_rotations=False, generator=torch.Generator().manual_seed(2))
    assert images.shape == x.shape and labels.shape == (40,)
    assert set(labels.tolist()) == {0, 1, 2, 3}
    for i in range(40):
        np.testing.assert_array_equal(images[i].numpy(), np.rot90(x[i].numpy(), labels[i].item(), axes=(1, 2)))
    again, labels_again = rotation_batch(x, all_rotations=False, generator=torch.Generator().manual_seed(2))
    assert torch.equal(labels, labels_again) and torch.equal(images, again)
    torch.manual_seed(5)
    _, a = rotation_batch(x, all_rotations=False)
    torch.manual_seed(5)
    _, b = rotation_batch(x, all_rotations=False)
    assert torch.equal(a, b)  # the global generator when none is given: a resumed run draws the same turns


def test_rotation_needs_square_images():
    with pytest.raises(ValueError, match="square"):
        rotation_batch(torch.zeros(1, 3, 4, 5))


# -- patch ------------------------------------------------------------------------------------

# size -> (grid origin, cell, gap, jitter, patch side), worked out by hand from the documented rules
GEOMETRY = {32: (1, 10, 3, 1, 7), 64: (0, 21, 5, 2, 16), 100: (0, 33, 8, 3, 25), 224: (1, 74, 19, 7, 55)}
# label -> (row step, column step) from the centre cell, reading order
DIRECTION = {0: (-1, -1), 1: (-1, 0), 2: (-1, 1), 3: (0, -1), 4: (0, 1), 5: (1, -1), 6: (1, 0), 7: (1, 1)}


@pytest.mark.parametrize("size", sorted(GEOMETRY))
def test_patch_geometry_by_hand(size):
    origin, cell, gap, jitter, side = GEOMETRY[size]
    geo = patch_geometry(size)
    assert (geo.origin, geo.cell, geo.gap, geo.jitter, geo.side) == (origin, cell, gap, jitter, side)


@pytest.mark.parametrize("size", sorted(GEOMETRY))
def test_patch_positions_lie_in_their_cells_and_never_touch(size):
    origin, cell, gap, jitter, side = GEOMETRY[size]
    n = 4000
    centre, neighbour, labels, p = patch_positions(size, n, torch.Generator().manual_seed(0))
    assert p == side and centre.shape == (n, 2) and neighbour.shape == (n, 2) and labels.shape == (n,)
    assert set(labels.tolist()) == set(range(8))
    lo_margin, hi_margin = gap // 2 - jitter, gap - gap // 2 - jitter  # the cell shrunk by the gap, less the jitter
    offsets = []
    for (cy, cx), (ny, nx), label in zip(centre.tolist(), neighbour.tolist(), labels.tolist()):
        dr, dc = DIRECTION[label]
        for (y, x), (row, col) in (((cy, cx), (1, 1)), ((ny, nx), (1 + dr, 1 + dc))):
            top, left = origin + row * cell, origin + col * cell
            assert top + lo_margin <= y and y + side <= top + cell - hi_margin
            assert left + lo_margin <= x and x + side <= left + cell - hi_margin
            offsets += [y - top - gap // 2, x - left - gap // 2]
        # pixels strictly between the two patches along each axis the cells differ in
        for a, b, step in ((cy, ny, dr), (cx, nx, dc)):
            if step:
                between = (b - (a + side)) if step > 0 else (a - (b + side))
                assert between >= 1
        assert max(ny - (cy + side), cy - (ny + side), nx - (cx + side), cx - (nx + side)) >= 1
    assert min(offsets) == -jitter and max(offsets) == jitter


def test_patch_positions_follow_the_generator():
    a = patch_positions(64, 10, torch.Generator().manual_seed(3))
    b = patch_positions(64, 10, torch.Generator().manual_seed(3))
    assert all(torch.equal(u, v) for u, v in zip(a[:3], b[:3]))


def test_patch_geometry_refuses_images_too_small():
    with pytest.raises(ValueError, match="too small"):
        patch_geometry(5)


def test_cut_patches_equals_slicing():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 3, 20, 20, generator=g)
    yx = torch.randint(0, 14, (6, 2), generator=g)
    patches = cut_patches(x, yx, 6)
    for i in range(6):
        y, xx = yx[i].tolist()
        assert torch.equal(patches[i], x[i, :, y:y + 6, xx:xx + 6])


def test_drop_color_greys_about_a_third_of_patches():
    x = torch.randn(3000, 3, 2, 2, generator=torch.Generator().manual_seed(0))
    out = drop_color(x, 1 / 3, torch.Generator().manual_seed(1))
    grey = (out == out.mean(1, keepdim=True)).all(dim=(1, 2, 3))
    assert abs(grey.float().mean().item() - 1 / 3) < 0.03
    assert torch.equal(out[~grey], x[~grey])
    assert torch.allclose(out[grey], x[grey].mean(1, keepdim=True).expand(-1, 3, -1, -1))


# -- exemplar ---------------------------------------------------------------------------------


def _nt_xent_by_hand(z1: torch.Tensor, z2: torch.Tensor, t: float) -> float:
    z = [v / np.linalg.norm(v) for v in np.concatenate([z1.double().numpy(), z2.double().numpy()])]
    n = len(z1)
    total = 0.0
    for i in range(2 * n):
        pos = i + n if i < n else i - n
        denom = sum(math.exp(float(z[i] @ z[k]) / t) for k in range(2 * n) if k != i)
        total += -math.log(math.exp(float(z[i] @ z[pos]) / t) / denom)
    return total / (2 * n)


@pytest.mark.parametrize("n", [2, 3, 8])
@pytest.mark.parametrize("t", [0.1, 0.5, 1.0])
def test_nt_xent_matches_the_simclr_formula(n, t):
    g = torch.Generator().manual_seed(n)
    z1, z2 = torch.randn(n, 5, generator=g, dtype=torch.float64), torch.randn(n, 5, generator=g, dtype=torch.float64)
    assert nt_xent(z1, z2, t).item() == pytest.approx(_nt_xent_by_hand(z1, z2, t), rel=1e-9)
    assert nt_xent(z1, z2, t, reduction="sum").item() == pytest.approx(2 * n * _nt_xent_by_hand(z1, z2, t), rel=1e-9)


def test_nt_xent_is_lower_for_matching_views():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(16, 8, generator=g)
    assert nt_xent(z, z.clone(), 0.5) < nt_xent(z, torch.randn(16, 8, generator=g), 0.5)


def test_positive_is_nearest_by_hand():
    g = torch.Generator().manual_seed(0)
    z1 = torch.randn(5, 4, generator=g)
    z2 = z1 + 0.9 * torch.randn(5, 4, generator=g)
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    expected = []
    for i in range(10):
        sims = [(float(z[i] @ z[k]), k) for k in range(10) if k != i]
        expected.append(max(sims)[1] == (i + 5) % 10)
    assert positive_is_nearest(z1, z2).tolist() == expected
    assert positive_is_nearest(z1, z1.clone()).all()


def test_crop_resize_uses_the_interpolate_pixel_convention():
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    whole = torch.tensor([[0.0, 0.0, 8.0, 8.0]] * 2)
    torch.testing.assert_close(crop_resize(x, whole, 8), x)  # the whole image at its own size is itself
    torch.testing.assert_close(crop_resize(x, whole, 13), F.interpolate(x, size=(13, 13), mode="bilinear", align_corners=False))
    half = torch.tensor([[0.0, 0.0, 4.0, 4.0], [4.0, 2.0, 8.0, 6.0]])
    out = crop_resize(x, half, 8)
    ref0 = F.interpolate(x[:1, :, 0:4, 0:4], size=(8, 8), mode="bilinear", align_corners=False)
    ref1 = F.interpolate(x[1:, :, 2:6, 4:8], size=(8, 8), mode="bilinear", align_corners=False)
    # away from box edges inside the image (where the crop blends in the next pixel outside the box)
    torch.testing.assert_close(out[:1, :, :-1, :-1], ref0[:, :, :-1, :-1])
    torch.testing.assert_close(out[1:, :, 1:-1, 1:], ref1[:, :, 1:-1, 1:])


def test_random_view_is_per_image_and_follows_the_generator():
    x = torch.randn(16, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    a = random_view(x, 0.3, 0.4, torch.Generator().manual_seed(1))
    b = random_view(x, 0.3, 0.4, torch.Generator().manual_seed(1))
    c = random_view(x, 0.3, 0.4, torch.Generator().manual_seed(2))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, c)


# -- dae --------------------------------------------------------------------------------------


def test_corrupt_statistics():
    x = torch.randn(64, 3, 40, 40, generator=torch.Generator().manual_seed(0))
    out, mask = corrupt(x, 0.5, 0.5, 4, torch.Generator().manual_seed(1))
    assert out.shape == x.shape and mask.shape == (64, 1, 40, 40)
    cells = mask[:, 0].reshape(64, 4, 10, 4, 10)
    # cell-aligned: each 10x10 cell is all masked or all kept
    assert torch.equal(cells.amax(dim=(2, 4)), cells.amin(dim=(2, 4)))
    assert (cells.amax(dim=(2, 4)).sum(dim=(1, 2)) == masked_cells(0.5, 4)).all()
    assert mask.mean().item() == pytest.approx(0.5)
    assert (out[mask.expand_as(out).bool()] == 0).all()
    kept = ~mask.expand_as(out).bool()
    assert (out - x)[kept].std().item() == pytest.approx(0.5, abs=0.01)
    assert (out - x)[kept].mean().item() == pytest.approx(0.0, abs=0.01)
    # different images lose different cells
    assert len({tuple(c.flatten().tolist()) for c in cells.amax(dim=(2, 4))}) > 32


def test_corrupt_cells_tile_odd_sizes_and_round_the_count():
    x = torch.zeros(20, 3, 37, 37)
    _, mask = corrupt(x, 0.0, 0.3, 3, torch.Generator().manual_seed(0))
    idx = torch.arange(37) * 3 // 37
    assert torch.bincount(idx).tolist() == [13, 12, 12]
    cell_of = idx[:, None] * 3 + idx[None, :]
    for m in mask[:, 0]:
        masked = {int(c) for c in cell_of[m.bool()].unique()}
        assert len(masked) == round(0.3 * 9)
        assert m.bool().equal(torch.isin(cell_of, torch.tensor(sorted(masked))))


def test_corrupt_without_noise_or_mask_is_the_identity():
    x = torch.randn(4, 3, 9, 9)
    out, mask = corrupt(x, 0.0, 0.0, 4, torch.Generator().manual_seed(0))
    assert torch.equal(out, x) and not mask.any()


def test_reconstruction_error_by_hand():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(3, 3, 4, 4, generator=g), torch.randn(3, 3, 4, 4, generator=g)
    mask = (torch.rand(3, 1, 4, 4, generator=g) < 0.5).float()
    plain = reconstruction_error(a, b)
    masked = reconstruction_error(a, b, mask)
    for i in range(3):
        d = (a[i] - b[i]) ** 2
        assert plain[i].item() == pytest.approx(d.mean().item(), rel=1e-6)
        picked = [d[c, y, x].item() for c in range(3) for y in range(4) for x in range(4) if mask[i, 0, y, x]]
        assert masked[i].item() == pytest.approx(sum(picked) / len(picked), rel=1e-6)


@pytest.mark.parametrize("side,size,scale", [(1, 28, 32), (2, 33, 32), (4, 57, 16), (3, 3, 1), (4, 57, 4)])
def test_light_decoder_reaches_any_size(side, size, scale):
    dec = LightDecoder(20, 3, 16, scale=scale)
    assert len(dec.blocks) == math.ceil(math.log2(scale))
    assert dec(torch.randn(2, 20, side, side), size).shape == (2, 3, size, size)
    assert dec(torch.randn(2, 20, side, side), (size, size + 2)).shape == (2, 3, size, size + 2)


def test_light_decoder_blocks_and_widths():
    assert [blocks_for(s) for s in (1, 2, 7, 8, 9, 32)] == [0, 1, 3, 3, 4, 5]
    dec = LightDecoder(128, 5, 64, scale=32)
    widths = [b[1].out_channels for b in dec.blocks]
    assert widths == [32, 16, 16, 16, 16] and dec.out.out_channels == 5
    assert dec(torch.randn(1, 128, 2, 2), 64).shape == (1, 5, 64, 64)


def test_dae_decoder_matches_the_body_stride():
    task = create_pretext("dae", create_backbone("resnet_small", num_classes=1, weights=None))
    assert len(task.module.head.blocks) == 3  # resnet_small's 32-px input leaves a 4x4 map: stride 8, three doublings
    assert task.module.head.proj.in_channels == 128


def test_dae_refuses_a_flat_body():
    flat = Backbone(name="flat", stages=[nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())], stage_names=["s"],
                    num_features=4, cam_index=0, preprocess=Preprocess(mean=(0.5,) * 3, std=(0.5,) * 3, image_size=16), num_classes=1)
    with pytest.raises(ValueError, match="spatial"):
        create_pretext("dae", flat)


# -- registry and options ---------------------------------------------------------------------


def test_tasks_live_in_their_own_registry():
    assert {"rotation", "exemplar", "patch", "dae"} <= set(PRETEXTS.names())
    assert not set(PRETEXTS.names()) & set(METHODS.names())
    for name in PRETEXTS:
        cls = PRETEXTS.get(name)
        assert issubclass(cls, PretextTask) and cls not in [METHODS.get(m) for m in METHODS]
        assert not cls.needs.labels and not cls.needs.cached_features


@pytest.mark.parametrize("options_type,bad", [
    (RotationOptions, {"all_rotations": 1}),
    (ExemplarOptions, {"temperature": 0.0}), (ExemplarOptions, {"crop_min": 0.0}), (ExemplarOptions, {"crop_min": 1.5}),
    (ExemplarOptions, {"jitter": 1.0}), (ExemplarOptions, {"proj_dim": 0}),
    (PatchOptions, {"gap_frac": 1.0}), (PatchOptions, {"jitter_frac": 0.5}), (PatchOptions, {"color_drop": "yes"}),
    (DAEOptions, {"noise_std": -0.1}), (DAEOptions, {"mask_frac": 1.0}), (DAEOptions, {"mask_cells": 0}),
    (DAEOptions, {"masked_only": True, "mask_frac": 0.0}), (DAEOptions, {"decoder_width": 8}),
])
def test_options_refuse_values_out_of_range(options_type, bad):
    with pytest.raises(ValueError):
        options_type(**bad)


def test_options_from_the_command_line():
    assert build_options(PRETEXTS.get("rotation"), "rotation", {"all_rotations": "false"}).all_rotations is False
    assert build_options(PRETEXTS.get("exemplar"), "exemplar", {"crop_min": "0.6"}).crop_min == 0.6
    with pytest.raises(ConfigError, match="no option"):
        build_options(PRETEXTS.get("patch"), "patch", {"gap": "0.2"})
    for name in PRETEXTS:
        for f in PRETEXTS.get(name).Options.__dataclass_fields__.values():
            assert f.metadata.get("help"), f"{name}: option {f.name} has no help"


# -- the contract over every task ---------------------------------------------------------------

NAMES = PRETEXTS.names()
FIRST_KEY = {"rotation": "val_pretext_acc", "exemplar": "val_pretext_acc", "patch": "val_pretext_acc", "dae": "val_neg_mse"}
# smooth images (random 8x8 colour fields, upsampled): like photos, they can be reconstructed from a coarse map
IMAGES = F.interpolate(torch.randn(8, 3, 8, 8, generator=torch.Generator().manual_seed(0)), size=32, mode="bilinear", align_corners=False)


def _task(name: str, freeze: int = 0) -> PretextTask:
    torch.manual_seed(0)
    model = create_backbone("resnet_small", num_classes=1, weights=None)
    model.freeze(freeze)
    return create_pretext(name, model)


def _batch() -> Batch:
    return Batch(images=IMAGES.clone(), labels=torch.arange(len(IMAGES)))


@pytest.mark.parametrize("name", NAMES)
def test_step_gives_a_finite_loss_whose_gradient_reaches_body_and_head(name):
    task = _task(name)
    assert task.trainable() is task.module and task.eval_module() is task.module and task.head_module() is task.module.head
    task.module.train()
    out = task.step(_batch())
    loss = out["loss"]
    assert loss.ndim == 0 and torch.isfinite(loss) and all(torch.as_tensor(v).ndim == 0 for v in out.values())
    loss.backward()
    for stage in task.module.body.stages:
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in stage.parameters())
    assert all(p.grad is not None for p in task.module.head.parameters())
    # DDP needs every trainable parameter in the forward: the body's unused classifier head does not train
    unused = [n for n, p in task.trainable().named_parameters() if p.requires_grad and p.grad is None]
    assert not unused, unused
    torch.manual_seed(3)
    a = task.step(_batch())["loss"].item()
    torch.manual_seed(3)
    assert task.step(_batch())["loss"].item() == a  # inputs drawn from the global generator: exact on resume


@pytest.mark.parametrize("name", NAMES)
def test_eval_step_is_deterministic_and_leaves_the_global_generator(name):
    task = _task(name)
    task.module.eval()
    torch.manual_seed(7)
    state = torch.get_rng_state()
    with torch.inference_mode():
        first = task.eval_step(_batch())
        second = task.eval_step(_batch())
    assert torch.equal(torch.get_rng_state(), state)
    assert first.keys() == second.keys() and {"loss", "count"} <= first.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
    scores = task.score({k: float(v) for k, v in first.items()})
    assert next(iter(scores)) == FIRST_KEY[name]
    if name == "dae":
        assert scores["val_neg_mse"] == -scores["val_loss"] > -float("inf")
    else:
        assert 0.0 <= scores["val_pretext_acc"] <= 1.0


@pytest.mark.parametrize("name", NAMES)
def test_a_few_steps_lower_the_loss(name):
    task = _task(name)
    task.module.train()
    opt = torch.optim.Adam([p for p in task.trainable().parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(30):
        torch.manual_seed(0)  # the same task inputs every step: fitting them must work
        loss = task.step(_batch())["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-3:]) < 0.8 * losses[0], losses


@pytest.mark.parametrize("name", NAMES)
def test_frozen_stages_stay_frozen(name):
    task = _task(name, freeze=1)
    frozen = task.module.body.stages[0]
    stats = {k: v.clone() for k, v in frozen.state_dict().items()}
    task.module.train()
    assert not frozen.training
    task.step(_batch())["loss"].backward()
    assert all(p.grad is None for p in frozen.parameters())
    assert any(p.grad is not None for p in task.module.body.stages[1].parameters())
    assert all(torch.equal(stats[k], v) for k, v in frozen.state_dict().items())

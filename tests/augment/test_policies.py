"""Transform families, named policies, strength, declared invariances, CutMix/MixUp."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from headstart.augment import (
    POLICIES,
    TRANSFORMS,
    BatchMix,
    build_policy,
    parse_invariances,
    parse_steps,
    policy_steps,
)
from headstart.augment.transforms import _RandAugmentSubset
from headstart.engine import Batches
from headstart.errors import ConfigError
from headstart.methods import Batch, Setup, Supervised


def _img(seed: int = 0, size: int = 28) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (3, size, size), dtype=torch.uint8, generator=g)


# -- parsing and strength ----------------------------------------------------------------------


def test_spec_strings_lists_and_mappings_parse_alike():
    expected = [("crop", 0.6), ("hflip", 0.5), ("rotate", 10.0)]
    assert parse_steps("crop:0.6, hflip ,rotate:10") == expected
    assert parse_steps(["crop:0.6", "hflip", {"rotate": 10}]) == expected
    assert parse_steps("rotate") == [("rotate", TRANSFORMS.get("rotate").default)]


@pytest.mark.parametrize(
    "spec, words",
    [
        ("rotate:15,wobble", ["unknown transform 'wobble'", "hflip", "randaugment"]),
        ("rotate:400", ["outside 0..180", "degrees"]),
        ("crop:big", ["must be a number", "min area"]),
        ([{"rotate": 1, "crop": 0.5}], ["one transform"]),
    ],
)
def test_bad_specs_say_what_is_wrong(spec, words):
    with pytest.raises(ConfigError) as e:
        parse_steps(spec)
    for w in words:
        assert w in str(e.value)


def test_unknown_policy_name_lists_the_policies():
    with pytest.raises(ConfigError) as e:
        policy_steps("heavy")
    assert all(n in str(e.value) for n in ("none", "light", "standard", "strong"))


def test_strength_moves_each_magnitude_along_identity_to_written_value():
    _, steps = policy_steps("standard", 0.5)
    got = {s.family: s.magnitude for s in steps}
    # identity + (value - identity) * s: crop 1 + (0.6 - 1) * 0.5, rotate 15 * 0.5; flips keep their probability
    assert got == pytest.approx({"crop": 0.8, "hflip": 0.5, "rotate": 7.5, "translate": 0.05, "brightness": 0.15, "contrast": 0.15})
    _, doubled = policy_steps("rotate:120", 2.0)
    assert doubled[0].magnitude == 180.0  # clipped to the family's range
    assert policy_steps("standard", 0.0)[1] == []  # strength 0: nothing left
    assert build_policy("standard", 28, strength=0.0).augmenter is None
    with pytest.raises(ConfigError):
        policy_steps("light", -1)


def test_every_named_policy_runs_on_uint8_images_and_none_is_nothing():
    assert build_policy("none", 28).augmenter is None
    x = _img()
    for name in POLICIES:
        pol = build_policy(name, 28)
        if name == "none":
            continue
        torch.manual_seed(0)
        outs = [pol.augmenter(x, 0) for _ in range(6)]
        assert all(o.dtype == torch.uint8 and o.shape == x.shape for o in outs)
        assert any(not torch.equal(o, x) for o in outs), name
        assert any(not torch.equal(outs[0], o) for o in outs[1:]), f"{name}: every draw is the same"


# -- the exact forms against naive references ------------------------------------------------------


def test_exact_forms_match_naive_pixel_operations():
    x = _img(1).unsqueeze(0)
    ex = lambda name, m: TRANSFORMS.get(name).exact(x, m)  # noqa: E731
    assert torch.equal(ex("hflip", 1.0), x.flip(-1))
    assert torch.equal(ex("vflip", 1.0), x.flip(-2))
    assert (ex("rotate", 180.0).int() - x.flip(-1).flip(-2).int()).abs().max() <= 1
    assert (ex("rotate", 90.0).int() - torch.rot90(x, 1, dims=(-2, -1)).int()).abs().max() <= 1  # counter-clockwise
    assert torch.equal(ex("crop", 1.0), x)
    dark = (x.float() * 0.7).round().clamp(0, 255)
    assert (ex("brightness", 0.3).float() - dark).abs().max() <= 1
    shifted = torch.zeros_like(x)
    shifted[..., 3:] = x[..., :-3]
    assert torch.equal(ex("translate", 3 / 28), shifted)  # right by 3 px, zeros enter


# -- declared invariances ----------------------------------------------------------------------


def test_invariances_parse_from_strings_and_mappings():
    classes = [str(i) for i in range(10)]
    a = parse_invariances("hflip,rotate:15;6|9=hflip", classes)
    b = parse_invariances({"all": ["hflip", "rotate:15"], "6": "hflip", "9": ["hflip"]}, classes)
    assert a.default == b.default == {"hflip": 1.0, "rotate": 15.0}
    assert a.per_class == b.per_class == {"6": {"hflip": 1.0}, "9": {"hflip": 1.0}}
    assert parse_invariances(None) is None
    with pytest.raises(ConfigError) as e:
        parse_invariances("hflip;seven=hflip", classes)
    assert "seven" in str(e.value) and "'6'" in str(e.value)


def test_policies_drop_undeclared_transforms_and_cap_magnitudes():
    inv = parse_invariances("hflip,rotate:10")
    pol = build_policy("standard", 28, invariances=inv)
    assert [s.describe() for s in pol.steps] == ["hflip:0.5", "rotate:10"]
    assert any("crop:0.6 dropped" in n for n in pol.notes) and any("capped at the declared rotate:10" in n for n in pol.notes)


def test_per_class_invariances_leave_the_excluded_class_untouched():
    classes = ["0", "6"]
    pol = build_policy("rotate:30", 28, invariances=parse_invariances("rotate:30;6=hflip", classes), classes=classes)
    x = _img(2)
    torch.manual_seed(0)
    assert all(torch.equal(pol.augmenter(x, 1), x) for _ in range(10)), "class 6 declared only hflip: never rotated"
    assert any(not torch.equal(pol.augmenter(x, 0), x) for _ in range(10))
    # Batches hands each image's label to a per-class augmentation
    xs = torch.stack([x, x])
    ys = torch.tensor([0, 1])
    (bx, by), = list(Batches(xs, ys, batch_size=2, augment=pol.augmenter))
    assert torch.equal(bx[1], x) and torch.equal(by, ys)


def test_randaugment_restricted_to_declared_ops():
    x = _img(3)
    torch.manual_seed(0)
    only_identity = _RandAugmentSubset(keep={"Identity"}, num_ops=2, magnitude=9)
    assert all(torch.equal(only_identity(x), x) for _ in range(20)), "torchvision reads the restricted op space"
    pol = build_policy("randaugment:9", 28, invariances=parse_invariances("brightness,tone"))
    (step,) = pol.steps
    assert set(step.ops) == {"Identity", "Brightness", "Sharpness", "Posterize", "Solarize", "AutoContrast", "Equalize"}
    # rotate declared up to 5°: RandAugment's rotation at magnitude 9 is 9°, so it goes
    pol = build_policy("randaugment:9", 28, invariances=parse_invariances("rotate:5,brightness"))
    assert "Rotate" not in pol.steps[0].ops
    assert build_policy("randaugment:9", 28, invariances=parse_invariances("hflip")).steps == []


# -- CutMix / MixUp against the definition ---------------------------------------------------------


def test_mixup_blends_images_and_labels_with_one_weight():
    torch.manual_seed(0)
    x = torch.randn(6, 3, 16, 16)
    y = torch.arange(6) % 3
    mx, soft = BatchMix(num_classes=3, mixup=0.4)(x, y)
    onehot, rolled = F.one_hot(y, 3).float(), F.one_hot(y.roll(1), 3).float()
    assert (y != y.roll(1)).all()
    lam = float(soft[0, y[0]])  # image 0's own class, which its partner (image 5) does not share
    assert torch.allclose(soft, lam * onehot + (1 - lam) * rolled, atol=1e-6)
    assert torch.allclose(mx, lam * x + (1 - lam) * x.roll(1, 0), atol=1e-5)


def test_cutmix_pastes_a_box_and_mixes_labels_by_its_area():
    torch.manual_seed(1)
    x = torch.randn(4, 3, 20, 20)
    y = torch.tensor([0, 1, 2, 3])
    mx, soft = BatchMix(num_classes=4, cutmix=1.0)(x, y)
    from_other = (mx == x.roll(1, 0)).all(1) & (mx != x).any(1)  # pixels taken from the previous image
    share = float(from_other[0].float().mean())
    assert torch.allclose(((mx == x) | (mx == x.roll(1, 0))).all(), torch.tensor(True))
    assert soft[0, 0] == pytest.approx(1 - share, abs=1e-6) and soft[0, 3] == pytest.approx(share, abs=1e-6)
    assert torch.allclose(soft.sum(1), torch.ones(4))


def test_supervised_step_uses_the_mixed_soft_labels():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
    x, y = torch.randn(5, 3, 2, 2), torch.tensor([0, 1, 2, 0, 1])
    mix = BatchMix(num_classes=3, mixup=1.0)
    torch.manual_seed(7)
    out = Supervised(model, setup=Setup(num_classes=3, label_smoothing=0.1, mix=mix)).step(Batch(images=x, labels=y))
    torch.manual_seed(7)
    mx, soft = mix(x, y)
    expected = -(((1 - 0.1) * soft + 0.1 / 3) * model(mx).log_softmax(1)).sum(1).mean()
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-5)
    model.eval()  # no mixing outside training
    plain = Supervised(model, setup=Setup(num_classes=3, label_smoothing=0.0, mix=mix)).step(Batch(images=x, labels=y))["loss"]
    assert plain.item() == pytest.approx(F.cross_entropy(model(x), y).item(), rel=1e-6)


def test_batch_mix_refuses_negative_alphas():
    with pytest.raises(ConfigError):
        BatchMix(num_classes=3, cutmix=-1)
    assert torch.isfinite(BatchMix(num_classes=3, cutmix=1.0, mixup=0.2)(torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 0]))[0]).all()

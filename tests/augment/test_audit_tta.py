"""The label-safety audit on models whose behaviour is known, and test-time views."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from headstart.augment import (
    build_policy,
    flagged_steps,
    parse_invariances,
    recommended_invariances,
    run_audit,
    tta_views,
    unsafe_magnitudes,
)


def _halves(n_per_class: int = 20, size: int = 16) -> tuple[torch.Tensor, np.ndarray]:
    """Class 0: bright top half; class 1: bright bottom half (noise elsewhere)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 40, (2 * n_per_class, 3, size, size), dtype=torch.uint8, generator=g)
    x[:n_per_class, :, : size // 2] += 200
    x[n_per_class:, :, size // 2 :] += 200
    return x, np.repeat([0, 1], n_per_class)


def top_or_bottom(x: torch.Tensor) -> np.ndarray:
    """A 'model' that reads which half is brighter: mirror-invariant left-right, not top-bottom."""
    h = x.shape[-2] // 2
    return (x[..., h:, :].float().mean((1, 2, 3)) > x[..., :h, :].float().mean((1, 2, 3))).long().numpy()


def test_audit_flags_the_transforms_that_swap_the_classes_and_passes_the_rest():
    x, y = _halves()
    res = run_audit(top_or_bottom, x, y, ["top", "bottom"], families=["hflip", "vflip", "rotate", "brightness"])
    fam = res["families"]
    assert fam["hflip"] == {"safe_up_to": 1.0, "flagged_at": None, "unit": "probability"}
    assert fam["vflip"]["flagged_at"] == 1.0 and fam["vflip"]["safe_up_to"] is None
    assert fam["rotate"]["safe_up_to"] == 45.0 and fam["rotate"]["flagged_at"] == 90.0
    assert fam["brightness"]["flagged_at"] is None
    vflip = next(r for r in res["rows"] if r["family"] == "vflip")
    by_class = {c["class"]: c for c in vflip["per_class"]}
    assert by_class["top"]["flips_to"] == "bottom" and by_class["bottom"]["flips_to"] == "top"
    assert by_class["top"]["accuracy"] == 1.0 and by_class["top"]["accuracy_transformed"] == 0.0
    assert by_class["top"]["kind"] == "label change" and vflip["flip_rate"] == 1.0
    assert sorted(res["flagged"]) == ["rotate", "vflip"]
    assert res["recommended_invariances"] == "hflip,rotate:45,brightness:0.6"
    assert unsafe_magnitudes(res) == {"vflip": 1.0, "rotate": 90.0}


def test_a_transform_sending_every_class_to_one_is_erased_and_a_scatter_is_fragile():
    x = torch.zeros(60, 3, 8, 8, dtype=torch.uint8)
    y = np.repeat(np.arange(6), 10)
    calls = {"n": 0}

    def collapse(images):  # originals right, every transformed image called class 0
        calls["n"] += 1
        return y.copy() if calls["n"] == 1 else np.zeros(len(y), dtype=int)

    res = run_audit(collapse, x, y, list("abcdef"), families=["hflip"])
    kinds = {c["class"]: c["kind"] for c in res["rows"][0]["per_class"]}
    assert kinds == {"a": None, "b": "erased", "c": "erased", "d": "erased", "e": "erased", "f": "erased"}
    assert res["flagged"] == ["hflip"]

    calls["n"] = 0
    rng = np.random.default_rng(0)

    def scatter(images):  # transformed predictions spread over the other classes
        calls["n"] += 1
        return y.copy() if calls["n"] == 1 else (y + 1 + rng.integers(0, 5, len(y))) % 6

    res = run_audit(scatter, x, y, list("abcdef"), families=["hflip"])
    assert all(c["kind"] == "fragile" for c in res["rows"][0]["per_class"])
    assert res["flagged"] == [] and res["rows"][0]["fragile_classes"] == list("abcdef")


def test_flagged_steps_compare_the_policy_with_the_audit():
    audit = {"families": {"vflip": {"flagged_at": 1.0}, "rotate": {"flagged_at": 90.0}, "hflip": {"flagged_at": None}}}
    steps = build_policy("crop:0.7,hflip,vflip:0.3,rotate:15", 28).steps
    assert flagged_steps(steps, audit, 28) == ["vflip:0.3 (flagged from vflip:1)"]  # a flip is flagged at any probability
    assert flagged_steps(build_policy("rotate:120", 28).steps, audit, 28) == ["rotate:120 (flagged from rotate:90)"]
    # RandAugment at 9/30 rotates by 9° and shears by ~5°: flagged only through a family flagged that mildly
    ra = build_policy("randaugment:9", 28).steps
    assert flagged_steps(ra, audit, 28) == []
    assert flagged_steps(ra, {"families": {"rotate": {"flagged_at": 5.0}}}, 28) == ["randaugment:9 (its Rotate ops)"]
    assert recommended_invariances({"rotate": {"safe_up_to": 45.0}, "vflip": {"safe_up_to": None}, "hflip": {"safe_up_to": 1.0}}) == "rotate:45,hflip"


def test_tta_views_keep_only_label_safe_transforms():
    views, notes = tta_views()
    assert [v.name for v in views] == ["identity", "hflip:1", "crop:0.85"] and notes == []
    views, notes = tta_views(declared=parse_invariances("hflip,rotate:10").default)
    assert [v.name for v in views] == ["identity", "hflip:1"] and "crop:0.85 left out" in notes[0]
    views, notes = tta_views(unsafe={"hflip": 1.0, "crop": 0.6})  # crop flagged only at stronger zoom: kept
    assert [v.name for v in views] == ["identity", "crop:0.85"] and "audit flagged hflip" in notes[0]
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.uint8).view(2, 3, 4, 4)
    assert torch.equal(views[0](x), x)
    with pytest.raises(Exception) as e:
        tta_views("randaugment:9")
    assert "no deterministic form" in str(e.value)

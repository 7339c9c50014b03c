"""CAM boxes and masks, IoU, coordinate mapping, ground-truth CSVs, and the bias audit's shares
and flags, against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from headstart.errors import DataError
from headstart.explain import (
    SquareMap,
    bias_audit,
    box_iou,
    boxes_mask,
    cam_box,
    cam_mask,
    energy_shares,
    mask_iou,
    read_ground_truth,
    region_masks,
)


def _blob(side: int, x0: int, y0: int, x1: int, y1: int, value: float = 1.0) -> np.ndarray:
    m = np.zeros((side, side), np.float32)
    m[y0:y1, x0:x1] = value
    return m


def test_box_is_the_largest_component_above_the_threshold():
    cam = _blob(32, 4, 6, 14, 20) + _blob(32, 24, 24, 27, 27, 0.9)  # big blob and a small one
    assert cam_box(cam, 0.5) == (4.0, 6.0, 14.0, 20.0)
    assert cam_mask(cam, 0.5).sum() == 10 * 14 + 9
    assert cam_box(cam, 0.95) == (4.0, 6.0, 14.0, 20.0)
    assert cam_box(np.zeros((8, 8)), 0.5) is None
    with pytest.raises(ValueError):
        cam_mask(cam, 1.5)


def test_iou_against_naive_pixel_counts():
    rng = np.random.default_rng(0)
    for _ in range(50):
        a = tuple(sorted(rng.integers(0, 40, 2))) + tuple(sorted(rng.integers(0, 40, 2)))
        b = tuple(sorted(rng.integers(0, 40, 2))) + tuple(sorted(rng.integers(0, 40, 2)))
        ba, bb = (a[0], a[2], a[1] + 1, a[3] + 1), (b[0], b[2], b[1] + 1, b[3] + 1)  # x0, y0, x1, y1
        ma, mb = boxes_mask([ba], 48), boxes_mask([bb], 48)
        assert box_iou(ba, bb) == pytest.approx(mask_iou(ma, mb))
    assert box_iou(None, (0, 0, 1, 1)) == 0.0


def test_square_map_round_trips_and_matches_the_centre_crop():
    sq = SquareMap(width=200, height=100, side=50)  # crop x 50..150, scale 0.5
    assert sq.to_square((50, 0, 150, 100)) == (0, 0, 50, 50)
    assert sq.to_square((0, 0, 60, 40)) == (0.0, 0.0, 5.0, 20.0)  # clipped at the crop edge
    box = (70.0, 10.0, 120.0, 90.0)
    assert sq.to_original(sq.to_square(box)) == pytest.approx(box)


def test_ground_truth_csv_boxes_masks_and_errors(tmp_path):
    Image.new("RGB", (80, 40)).save(tmp_path / "a.png")
    Image.new("RGB", (40, 40)).save(tmp_path / "b.png")
    m = np.zeros((40, 40), np.uint8)
    m[10:20, 5:15] = 255
    Image.fromarray(m).save(tmp_path / "b-mask.png")
    (tmp_path / "boxes.csv").write_text("path,x0,y0,x1,y1\na.png,20,0,40,20\na.png,60,20,80,40\n")
    gt = read_ground_truth(tmp_path / "boxes.csv")
    assert tmp_path / "a.png" in gt and tmp_path / "b.png" not in gt
    # a.png: 80×40, centre crop x 20..60, side 20 → scale 0.5: box 1 → (0,0,10,10); box 2 outside the crop → empty
    assert gt.boxes_for(tmp_path / "a.png", 20) == [(0.0, 0.0, 10.0, 10.0), (20.0, 10.0, 20.0, 20.0)]
    assert gt.mask_for(tmp_path / "a.png", 20).sum() == 100
    (tmp_path / "masks.csv").write_text("path,mask\nb.png,b-mask.png\n")
    gm = read_ground_truth(tmp_path / "masks.csv").mask_for(tmp_path / "b.png", 40)
    assert gm.sum() == 100 and gm[10:20, 5:15].all()
    half = read_ground_truth(tmp_path / "masks.csv").mask_for(tmp_path / "b.png", 20)
    m[10:20, 5:15] = 3  # a mask of class indices: any non-zero value is the object
    Image.fromarray(m).save(tmp_path / "b-mask.png")
    gm = read_ground_truth(tmp_path / "masks.csv").mask_for(tmp_path / "b.png", 20)  # halved: the resize must not blend 3 away
    assert half.sum() >= 20 and (gm == half).all()
    for text, words in (
        ("file,x\na.png,1\n", "needs a header"),
        ("path,x0,y0,x1,y1\na.png,1,2,zz,4\n", "line 2.*numbers"),
        ("path,x0,y0,x1,y1\na.png,5,5,5,9\n", "line 2.*empty"),
        ("path,x0,y0,x1,y1\n", "no rows"),
    ):
        (tmp_path / "bad.csv").write_text(text)
        with pytest.raises(DataError, match=words):
            read_ground_truth(tmp_path / "bad.csv")
    with pytest.raises(DataError, match="does not exist"):
        read_ground_truth(tmp_path / "missing.csv")


def test_regions_and_shares_of_an_even_map_equal_their_areas():
    r = region_masks(32)
    assert r["centre"].mean() == 0.25 and r["border"].mean() == pytest.approx(1 - 0.75**2)
    s = energy_shares(np.ones((2, 32, 32)))
    assert s["centre"] == pytest.approx([0.25, 0.25]) and s["border"] == pytest.approx([0.4375, 0.4375])
    assert np.isnan(s["inside"]).all()


def test_shares_against_a_naive_loop():
    rng = np.random.default_rng(1)
    cams = rng.random((5, 16, 16)).astype(np.float32)
    inside = [boxes_mask([(2, 2, 9, 12)], 16), None, boxes_mask([(0, 0, 16, 16)], 16), None, boxes_mask([(5, 5, 6, 6)], 16)]
    s = energy_shares(cams, inside)
    for i in range(5):
        tot = 0.0
        border = centre = ins = 0.0
        for y in range(16):
            for x in range(16):
                v = float(cams[i, y, x])
                tot += v
                if y < 2 or y >= 14 or x < 2 or x >= 14:
                    border += v
                if 4 <= y < 12 and 4 <= x < 12:
                    centre += v
                if inside[i] is not None and inside[i][y, x]:
                    ins += v
        assert s["border"][i] == pytest.approx(border / tot, rel=1e-5)
        assert s["centre"][i] == pytest.approx(centre / tot, rel=1e-5)
        assert (np.isnan(s["inside"][i]) if inside[i] is None else s["inside"][i] == pytest.approx(ins / tot, rel=1e-5))


def test_audit_flags_the_class_that_looks_at_the_border_and_the_one_that_looks_outside():
    side = 32
    centre = _blob(side, 10, 10, 22, 22)
    corner = _blob(side, 0, 0, 4, 4)  # a watermark in the corner
    cams = np.stack([centre] * 4 + [corner] * 4 + [centre] * 4)
    labels = np.array([0] * 4 + [1] * 4 + [2] * 4)
    boxes = [boxes_mask([(8, 8, 24, 24)], side)] * 8 + [boxes_mask([(0, 20, 10, 32)], side)] * 4  # class 2's object is elsewhere
    out = bias_audit(cams, labels, ["ok", "watermark", "elsewhere"], predicted=labels, inside=boxes, examples=2)
    rows = {r["class"]: r for r in out["per_class"]}
    assert rows["ok"]["flags"] == [] and rows["ok"]["border"] == 0.0 and rows["ok"]["centre"] == pytest.approx(1.0)
    assert rows["watermark"]["flags"] == ["border", "outside"] and rows["watermark"]["border"] == pytest.approx(1.0)
    assert rows["elsewhere"]["flags"] == ["outside"] and rows["elsewhere"]["inside"] == 0.0
    kinds = {(f["class"], f["kind"]) for f in out["flags"]}
    assert kinds == {("watermark", "border"), ("watermark", "outside"), ("elsewhere", "outside")}
    assert all(len(f["examples"]) == 2 for f in out["flags"])
    assert next(f for f in out["flags"] if f["kind"] == "border")["examples"] == [4, 5]
    assert rows["ok"]["accuracy"] == 1.0
    assert rows["ok"]["object_area"] == pytest.approx(0.25) and rows["ok"]["enrichment"] == pytest.approx(4.0)


def test_a_thin_object_that_draws_the_evidence_to_itself_is_not_flagged_outside():
    side = 32
    obj = boxes_mask([(14, 2, 18, 30)], side)  # a thin object: 4 × 28 px = 11 % of the image
    cam = _blob(side, 10, 2, 22, 30)  # a coarse map around it: 1/3 inside, but 3× an even map
    out = bias_audit(np.stack([cam] * 3), np.zeros(3, int), ["trouser"], inside=[obj] * 3)
    row = out["per_class"][0]
    assert row["inside"] == pytest.approx(1 / 3) and row["enrichment"] == pytest.approx((1 / 3) / obj.mean())
    assert row["flags"] == [] and out["flags"] == []


def test_a_class_that_looks_at_the_border_far_more_than_its_peers_is_flagged():
    side = 32
    rng = np.random.default_rng(0)
    centre = _blob(side, 8, 8, 24, 24) + 0.05
    marked = centre.copy()
    marked[0:4, 0:4] = 6.0  # a corner mark draws ~40 % of the evidence: under the absolute 50 %
    cams = np.stack([centre * rng.uniform(0.9, 1.1) for _ in range(9)] + [marked] * 3)
    labels = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3])
    out = bias_audit(cams, labels, ["a", "b", "c", "shirt"])
    rows = {r["class"]: r for r in out["per_class"]}
    assert 0.25 <= rows["shirt"]["border"] < 0.5 and rows["shirt"]["border_vs_other_classes"] > 2
    assert [f["class"] for f in out["flags"]] == ["shirt"] and "other classes' median" in out["flags"][0]["message"]
    assert all(rows[c]["flags"] == [] for c in "abc")
    # every class alike (even when all look at the border a little more): nothing stands out
    same = bias_audit(np.stack([centre] * 12), labels, ["a", "b", "c", "shirt"])
    assert same["flags"] == []


def test_boxes_of_a_sideways_phone_photo_use_its_upright_size(tmp_path):
    from headstart.data import load_image
    from headstart.explain import upright_size

    img = Image.new("RGB", (80, 40), "white")  # stored 80 × 40, shown upright as 40 × 80
    exif = img.getexif()
    exif[0x0112] = 6
    img.save(tmp_path / "p.jpg", exif=exif)
    assert upright_size(tmp_path / "p.jpg") == (40, 80) == load_image(tmp_path / "p.jpg").size
    (tmp_path / "b.csv").write_text("path,x0,y0,x1,y1\np.jpg,0,20,40,60\n")  # upright pixels: the centre square
    gt = read_ground_truth(tmp_path / "b.csv")
    assert gt.boxes_for(tmp_path / "p.jpg", 20) == [(0.0, 0.0, 20.0, 20.0)]


def test_energy_shares_of_maps_without_energy_are_nan_not_a_crash():
    """A 1x1 CAM layer (inputs of 32 px or less) gives all-zero maps; the audit must say
    'undefined', not fail."""
    from headstart.explain.bias import energy_shares

    out = energy_shares(np.zeros((3, 8, 8)))
    assert set(out) == {"centre", "border", "inside"}
    assert all(np.isnan(v).all() and v.shape == (3,) for v in out.values())
    mixed = np.zeros((2, 8, 8))
    mixed[1, 4, 4] = 1.0
    shares = energy_shares(mixed)
    assert all(np.isnan(v[0]) for v in shares.values())
    assert any(v[1] == 1.0 for k, v in shares.items() if k != "inside")

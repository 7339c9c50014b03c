"""Segmentation data: each kind of bad file gets its own clear error naming it; cut-outs take
their mask from the alpha channel; joint transforms keep image and mask aligned."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from headstart.errors import ConfigError
from headstart.segment.masks import IGNORE, composite, load_masks, read_classes
from headstart.segment.transforms import JointAugment, JointBatches


def pair_folder(root, n=3, size=(20, 16), classes="bg\nobj\n"):
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(n):
        img = np.zeros((size[1], size[0], 3), np.uint8)
        m = np.zeros((size[1], size[0]), np.uint8)
        img[4:10, 3:9] = 200
        m[4:10, 3:9] = 1
        Image.fromarray(img).save(root / "images" / f"a{i}.jpg" if i == 0 else root / "images" / f"a{i}.png")
        Image.fromarray(m, mode="L").save(root / "masks" / f"a{i}.png")
    if classes is not None:
        (root / "classes.txt").write_text(classes)
    return root


def test_a_good_folder_loads_resized_with_nearest_masks(tmp_path):
    ms = load_masks(pair_folder(tmp_path / "d"), size=32)
    assert ms.images.shape == (3, 3, 32, 32) and ms.masks.shape == (3, 32, 32)
    assert ms.classes == ["bg", "obj"] and ms.sizes == [(20, 16)] * 3 and ms.form == "masks"
    assert set(torch.unique(ms.masks).tolist()) == {0, 1}  # nearest: no blended label
    img, m = ms.original(1)
    assert img.size == (20, 16) and m.shape == (16, 20) and m[5, 4] == 1


def test_palette_masks_and_yaml_classes(tmp_path):
    root = pair_folder(tmp_path / "d", classes=None)
    m = np.zeros((16, 20), np.uint8)
    m[:3] = 2
    m[-1] = IGNORE
    pal = Image.fromarray(m, mode="P")
    pal.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * (253 * 3))
    pal.save(root / "masks" / "a1.png")
    (root / "classes.yaml").write_text("{0: bg, 1: obj, 2: sky}\n")
    ms = load_masks(root, size=40)  # enlarged: 2 beside 0 must stay 2 or 0, never a blended 1
    assert ms.classes == ["bg", "obj", "sky"]
    assert int(ms.masks[1, 0, 0]) == 2 and int(ms.masks[1, -1, 0]) == IGNORE
    assert set(torch.unique(ms.masks[1]).tolist()) == {0, 2, IGNORE}
    (root / "classes.yaml").write_text("[bg, obj, sky, sea]\n")
    assert read_classes(root) == ["bg", "obj", "sky", "sea"]


def test_without_class_names_they_come_from_the_largest_index(tmp_path):
    ms = load_masks(pair_folder(tmp_path / "d", classes=None), size=16)
    assert ms.classes == ["class0", "class1"] and any("classes.txt" in n for n in ms.notes)


@pytest.mark.parametrize("breakage, message", [
    ("missing_mask", r"a1\.png: no mask \(expected .*masks/a1\.png\)"),
    ("orphan_mask", r"zz\.png: a mask without an image"),
    ("size", r"a1\.png: 10×10 px, its image a1\.png is 20×16"),
    ("rgb", r"a1\.png: a RGB image; a mask is a PNG of class indices"),
    ("range", r"a2\.png: values \[5\] but 2 classes are named"),
    ("not_image", r"a2\.png: cannot read this mask"),
    ("no_masks_dir", r"has images/ but no masks/"),
])
def test_each_bad_file_gets_its_own_clear_error(tmp_path, breakage, message):
    root = pair_folder(tmp_path / "d")
    if breakage == "missing_mask":
        (root / "masks" / "a1.png").unlink()
    elif breakage == "orphan_mask":
        Image.fromarray(np.zeros((16, 20), np.uint8), mode="L").save(root / "masks" / "zz.png")
    elif breakage == "size":
        Image.fromarray(np.zeros((10, 10), np.uint8), mode="L").save(root / "masks" / "a1.png")
    elif breakage == "rgb":
        Image.fromarray(np.zeros((16, 20, 3), np.uint8)).save(root / "masks" / "a1.png")
    elif breakage == "range":
        m = np.zeros((16, 20), np.uint8)
        m[0, 0] = 5
        Image.fromarray(m, mode="L").save(root / "masks" / "a2.png")
    elif breakage == "not_image":
        (root / "masks" / "a2.png").write_bytes(b"not a png")
    elif breakage == "no_masks_dir":
        import shutil

        shutil.rmtree(root / "masks")
    with pytest.raises(ConfigError, match=message) as err:
        load_masks(root, size=16)
    if breakage != "no_masks_dir":
        assert "nothing has been trained yet" in str(err.value)


def test_several_problems_are_listed_together(tmp_path):
    root = pair_folder(tmp_path / "d")
    (root / "masks" / "a1.png").unlink()
    Image.fromarray(np.zeros((3, 3), np.uint8), mode="L").save(root / "masks" / "a2.png")
    with pytest.raises(ConfigError, match=r"2 problem\(s\)") as err:
        load_masks(root, size=16)
    assert "a1.png: no mask" in str(err.value) and "a2.png: 3×3 px" in str(err.value)


def rgba(path, alpha):
    a = np.asarray(alpha, np.uint8)
    img = np.zeros(a.shape + (4,), np.uint8)
    img[..., 0] = 250
    img[..., 3] = a
    Image.fromarray(img, mode="RGBA").save(path)


def test_cutouts_take_the_alpha_as_the_mask_on_a_background_of_their_own(tmp_path):
    root = tmp_path / "c"
    root.mkdir()
    alpha = np.zeros((12, 12), np.uint8)
    alpha[3:9, 3:9] = 255
    alpha[2, 3:9] = 127  # just under half: background
    alpha[9, 3:9] = 128  # half: foreground
    rgba(root / "one.png", alpha)
    rgba(root / "two.png", alpha.T)
    ms = load_masks(root, size=12)
    assert ms.classes == ["background", "foreground"] and ms.form == "cutouts"
    assert (ms.masks[0].numpy() == (alpha >= 128)).all()
    fg = ms.masks[0].bool()
    assert (ms.images[0, 0][torch.from_numpy(alpha == 255)] == 250).all()  # opaque pixels keep their colour
    assert not fg[0, 0]
    both = torch.from_numpy((alpha == 0) & (alpha.T == 0))
    bg0, bg1 = ms.images[0][:, both].float(), ms.images[1][:, both].float()
    assert bg0.std() > 10 and (bg0 - bg1).abs().mean() > 10  # a varied background, each image its own
    again = load_masks(root, size=12)
    assert torch.equal(again.images, ms.images)  # the same file always gets the same background
    img, m = composite(Image.open(root / "one.png"), b"seed")
    assert img.mode == "RGB" and m.sum() == 42


def test_cutout_problems_are_named(tmp_path):
    root = tmp_path / "c"
    root.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "flat.png")
    rgba(root / "opaque.png", np.full((8, 8), 255))
    with pytest.raises(ConfigError) as err:
        load_masks(root, size=8)
    assert "flat.png: a RGB image without transparency" in str(err.value)
    assert "opaque.png: fully opaque" in str(err.value)


def test_a_planted_square_stays_under_its_mask_through_every_joint_transform():
    torch.manual_seed(0)
    aug = JointAugment(flip=True, min_scale=0.3, jitter=0.0)
    for trial in range(40):
        img = torch.zeros(3, 40, 40, dtype=torch.uint8)
        mask = torch.zeros(40, 40, dtype=torch.uint8)
        y, x = 5 + trial % 20, 3 + (trial * 7) % 25
        img[:, y : y + 12, x : x + 9] = 255
        mask[y : y + 12, x : x + 9] = 3  # a label of 3 next to 0: any blending would show as 1 or 2
        a, m = aug(img, mask)
        assert a.shape == img.shape and m.shape == mask.shape and m.dtype == mask.dtype
        assert set(torch.unique(m).tolist()) <= {0, 3}
        m = (m > 0).to(torch.uint8)
        bright = a[0] > 127
        # the image is interpolated bilinearly, the mask by nearest: they may differ at the square's edge only
        disagree = (bright != m.bool()).float()
        inner = torch.nn.functional.max_pool2d(disagree[None, None], 3, stride=1, padding=1)[0, 0]
        edge = torch.nn.functional.max_pool2d(m.float()[None, None], 3, 1, 1)[0, 0] - (-torch.nn.functional.max_pool2d(-m.float()[None, None], 3, 1, 1)[0, 0])
        assert (disagree <= edge).all(), trial
        assert inner.mean() < 0.2


def test_joint_batches_draw_the_same_crops_from_the_same_random_state():
    imgs = torch.randint(0, 255, (6, 3, 16, 16), dtype=torch.uint8)
    masks = torch.randint(0, 3, (6, 16, 16), dtype=torch.uint8)
    jb = JointBatches(imgs, masks, joint=JointAugment(), batch_size=4, shuffle=True, seed=3)
    torch.manual_seed(5)
    first = [(b.images.clone(), b.labels.clone()) for b in jb]
    jb2 = JointBatches(imgs, masks, joint=JointAugment(), batch_size=4, shuffle=True, seed=3)
    torch.manual_seed(5)
    second = [(b.images, b.labels) for b in jb2]
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, second))
    assert first[0][1].dtype == torch.long

"""Detection data: the boxes CSV read into square training tensors with the boxes scaled along,
the original boxes kept, and every bad row or file named in one error before anything trains."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from headstart.detect.boxes import ONE_CLASS, csv_of, load_boxes
from headstart.errors import DataError


def _image(path, w=40, h=30, value=90):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((h, w, 3), value, np.uint8)).save(path)


@pytest.fixture
def folder(tmp_path):
    _image(tmp_path / "a.png")
    _image(tmp_path / "sub" / "b.png", w=20, h=20)
    _image(tmp_path / "c.png")
    (tmp_path / "boxes.csv").write_text(
        "path,x0,y0,x1,y1,label\n"
        "a.png,0,0,20,15,cat\n"
        "a.png,20,15,40,30,dog\n"
        "sub/b.png,2,4,12,20,cat\n"
        "c.png,,,,,\n"
    )
    return tmp_path


def test_boxes_are_scaled_with_the_stretched_image_and_kept_as_given(folder):
    bs = load_boxes(folder, size=16)
    assert bs.classes == ["cat", "dog"] and len(bs) == 3 and bs.num_boxes == 3
    assert bs.images.shape == (3, 3, 16, 16) and bs.images.dtype == torch.uint8
    a = [p.name for p in bs.paths].index("a.png")
    # a is 40 × 30: x scales by 16/40, y by 16/30
    torch.testing.assert_close(bs.boxes[a], torch.tensor([[0.0, 0.0, 8.0, 8.0], [8.0, 8.0, 16.0, 16.0]]))
    assert bs.labels[a].tolist() == [0, 1]
    np.testing.assert_array_equal(bs.targets(a)["boxes"], [[0, 0, 20, 15], [20, 15, 40, 30]])
    assert bs.sizes[a] == (40, 30)
    c = [p.name for p in bs.paths].index("c.png")
    assert bs.boxes[c].shape == (0, 4) and bs.labels[c].shape == (0,)  # a background image
    assert any("without boxes" in n for n in bs.notes)
    assert csv_of(folder) == folder / "boxes.csv" and len(load_boxes(folder / "boxes.csv", size=8)) == 3


def test_class_order_comes_from_classes_txt_or_the_run(folder):
    (folder / "classes.txt").write_text("dog\ncat\n")
    bs = load_boxes(folder, size=8)
    a = [p.name for p in bs.paths].index("a.png")
    assert bs.classes == ["dog", "cat"] and bs.labels[a].tolist() == [1, 0]
    run = load_boxes(folder, size=8, classes=["cat", "dog", "bird"])
    assert run.classes == ["cat", "dog", "bird"] and run.labels[a].tolist() == [0, 1]
    with pytest.raises(DataError, match="label 'dog' is not among the run's classes"):
        load_boxes(folder, size=8, classes=["cat"])


def test_without_a_label_column_every_box_is_one_class(tmp_path):
    _image(tmp_path / "a.png")
    (tmp_path / "b.csv").write_text("path,x0,y0,x1,y1\na.png,1,1,10,10\na.png,5,5,30,20\n")
    bs = load_boxes(tmp_path / "b.csv", size=8)
    assert bs.classes == [ONE_CLASS] and bs.labels[0].tolist() == [0, 0]


def test_a_box_a_pixel_outside_is_clipped_and_counted(tmp_path):
    _image(tmp_path / "a.png", w=100, h=100)
    (tmp_path / "b.csv").write_text("path,x0,y0,x1,y1,label\na.png,-1,0,101,50,x\n")
    bs = load_boxes(tmp_path / "b.csv", size=10)
    np.testing.assert_array_equal(bs.targets(0)["boxes"], [[0, 0, 100, 50]])
    assert any("clipped" in n for n in bs.notes)


def test_every_bad_row_is_named_at_once(tmp_path):
    _image(tmp_path / "a.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    (tmp_path / "classes.txt").write_text("cat\n")
    (tmp_path / "boxes.csv").write_text(
        "path,x0,y0,x1,y1,label\n"
        "a.png,0,0,ten,5,cat\n"        # line 2: not a number
        "a.png,5,5,5,9,cat\n"          # line 3: empty
        "a.png,0,0,80,20,cat\n"        # line 4: leaves the 40 × 30 image
        "missing.png,0,0,5,5,cat\n"    # line 5: no such file
        "broken.png,0,0,5,5,cat\n"     # line 6: not an image
        ",0,0,5,5,cat\n"               # line 7: no path
        "a.png,0,0,5,5,\n"             # line 8: no label
        "a.png,0,0,5,5,dog\n"          # line 9: not in classes.txt
    )
    with pytest.raises(DataError) as err:
        load_boxes(tmp_path, size=8)
    msg = str(err.value)
    assert "8 problem(s)" in msg and "nothing has been trained yet" in msg
    for needle in ("line 2", "must be numbers", "line 3", "is empty", "line 4", "leaves the 40×30 image", "line 5", "file not found",
                   "line 6", "line 7", "no path", "line 8", "without a label", "line 9", "'dog' is not among"):
        assert needle in msg, needle


def test_folders_and_headers_are_checked(tmp_path):
    with pytest.raises(DataError, match="without boxes.csv"):
        load_boxes(tmp_path, size=8)
    with pytest.raises(DataError, match="does not exist"):
        load_boxes(tmp_path / "nope.csv", size=8)
    (tmp_path / "h.csv").write_text("file,box\nx,y\n")
    with pytest.raises(DataError, match="needs a header with path,x0,y0,x1,y1"):
        load_boxes(tmp_path / "h.csv", size=8)
    (tmp_path / "e.csv").write_text("path,x0,y0,x1,y1,label\n")
    with pytest.raises(DataError, match="no rows"):
        load_boxes(tmp_path / "e.csv", size=8)


def test_boxes_are_read_on_the_upright_image(tmp_path):
    img = Image.fromarray(np.zeros((20, 50, 3), np.uint8))  # stored 50 wide, 20 high
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated: 20 wide, 50 high
    img.save(tmp_path / "t.jpg", exif=exif.tobytes())
    (tmp_path / "b.csv").write_text("path,x0,y0,x1,y1,label\nt.jpg,0,30,20,50,x\n")  # fits only the upright image
    bs = load_boxes(tmp_path / "b.csv", size=10)
    assert bs.sizes[0] == (20, 50)
    torch.testing.assert_close(bs.boxes[0], torch.tensor([[0.0, 6.0, 10.0, 10.0]]))

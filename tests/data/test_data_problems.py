"""What users' folders hold besides clean images: files the decoder complains about, files that
are not images at all, images over the pixel limit. Each is reported in the CLI's words, once,
and nothing of Pillow's reaches the terminal raw."""

from __future__ import annotations

import hashlib
import logging
import subprocess
import sys
import warnings

import pytest
from PIL import Image

from headstart.data import load_folder, load_unlabeled
from headstart.data.decode import DEFAULT_MAX_PIXELS, MAX_PIXELS_ENV, decode_file, load_image, max_pixels_limit
from headstart.data.sources import ignored_kinds, ignored_message
from headstart.errors import BadImageError, ConfigError


def test_decoder_warnings_stay_with_the_file(odd_files):
    warned, broken, logged = odd_files
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning that escaped would raise here
        d = decode_file(warned)
    assert d.image.size == (32, 24)
    assert any("Tag data larger than file" in w for w in d.warnings), d.warnings
    assert load_image(warned).size == (32, 24)
    with pytest.raises(BadImageError) as info:
        decode_file(broken)
    assert "decoder warnings: " in info.value.reason and "Tag data larger than file" in info.value.reason
    assert str(broken) in str(info.value)
    with pytest.raises(BadImageError) as info:
        decode_file(logged)
    assert "More samples per pixel than can be decoded: 30000" in info.value.reason


def test_a_warning_is_caught_for_every_file_not_once_per_place(tmp_path, odd_files):
    warned = odd_files[0]
    copies = []
    for i in range(3):
        copies.append(tmp_path / f"copy{i}.tif")
        copies[-1].write_bytes(warned.read_bytes())
    assert all(decode_file(p).warnings for p in copies)


def test_warnings_outside_decoding_are_left_alone(odd_files):
    decode_file(odd_files[0])  # installs the hook
    with pytest.warns(UserWarning, match="not a decoder warning"):
        warnings.warn("not a decoder warning", UserWarning, stacklevel=1)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        Image.open(odd_files[0]).load()  # Pillow used directly, not by headstart
    assert any("Tag data larger than file" in str(w.message) for w in seen)


def test_nothing_of_pillows_prints_while_checking_a_folder(tmp_path, odd_files, capfd):
    root = tmp_path / "ds"
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(root / cls / f"{i}.png")
    warned, broken, logged = odd_files
    for f in (warned, broken, logged):
        (root / "a" / f.name).write_bytes(f.read_bytes())
    capfd.readouterr()
    ds = load_folder(root)
    out, err = capfd.readouterr()
    assert "Tag data" not in out + err and "samples per pixel" not in out + err
    assert [p.rsplit("/", 1)[1] for p, _ in ds.warned] == ["warned.tif"]
    assert {p.rsplit("/", 1)[1] for p, _ in ds.skipped} == {"broken.tif", "logged.tif"}
    assert all("decoder warnings" in r or "samples per pixel" in r for _, r in ds.skipped)


def test_pillow_logging_outside_decoding_still_reaches_handlers(odd_files, caplog):
    decode_file(odd_files[0])
    with caplog.at_level(logging.ERROR, logger="PIL"):
        logging.getLogger("PIL.TiffImagePlugin").error("a message of the program's own")
    assert "a message of the program's own" in caplog.text


def test_the_cli_prints_no_raw_pillow_output(tmp_path, odd_files):
    """Through the real command, in a fresh process with no logging set up (where Python's
    last-resort handler would print Pillow's errors)."""
    root = tmp_path / "in"
    root.mkdir()
    for f in odd_files:
        (root / f.name).write_bytes(f.read_bytes())
    code = (
        "import sys; from headstart.data import load_unlabeled; "
        f"ds = load_unlabeled({str(root)!r}); print(len(ds), len(ds.skipped), len(ds.warned))"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.split() == ["1", "2", "1"]
    assert res.stderr == "", res.stderr


def test_digest_is_the_sha256_of_the_bytes(tmp_path):
    p = tmp_path / "x.png"
    Image.new("RGB", (5, 4), (1, 2, 3)).save(p)
    assert decode_file(p).digest == hashlib.sha256(p.read_bytes()).hexdigest()


def test_pixel_limit_from_the_environment(tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    Image.new("RGB", (30, 20)).save(path)
    monkeypatch.delenv(MAX_PIXELS_ENV, raising=False)
    assert max_pixels_limit() == DEFAULT_MAX_PIXELS
    monkeypatch.setenv(MAX_PIXELS_ENV, "500")
    with pytest.raises(BadImageError) as info:
        load_image(path)
    reason = info.value.reason
    assert "600 pixels, over the limit of 500" in reason
    assert "--max-image-pixels 600" in reason and f"{MAX_PIXELS_ENV}=600" in reason
    assert "load_image" not in reason and "PIL" not in reason
    monkeypatch.setenv(MAX_PIXELS_ENV, "600")
    assert load_image(path).size == (30, 20)
    monkeypatch.setenv(MAX_PIXELS_ENV, "lots")
    with pytest.raises(ConfigError, match=MAX_PIXELS_ENV):
        load_image(path)


def test_ignored_files_are_counted_by_kind(tmp_path):
    root = tmp_path / "ds"
    for cls in ("cat", "dog"):
        (root / cls).mkdir(parents=True)
        Image.new("RGB", (6, 6)).save(root / cls / "a.png")
    (root / "cat" / "notes.txt").write_text("x")
    (root / "cat" / "more.TXT").write_text("x")
    (root / "dog" / "vector.svg").write_text("<svg/>")
    (root / "dog" / "README").write_text("x")
    (root / "dog" / ".DS_Store").write_bytes(b"\0")
    (root / "LICENSE").write_text("x")
    ds = load_folder(root)
    assert len(ds) == 2 and len(ds.ignored) == 6
    assert ignored_kinds(ds.ignored) == ".txt ×2, (no extension) ×2, .svg, hidden .DS_Store"
    line = ignored_message(ds.ignored, str(root))
    assert line.startswith(f"ignored 6 file(s) in {root} that are not images headstart decodes: .txt ×2")
    assert "SVG or HEIC" in line
    assert ignored_message([], str(root)) is None


def test_a_class_folder_of_only_other_files_says_what_it_holds(tmp_path):
    root = tmp_path / "ds"
    (root / "cat").mkdir(parents=True)
    (root / "dog").mkdir(parents=True)
    Image.new("RGB", (6, 6)).save(root / "cat" / "a.png")
    (root / "dog" / "a.svg").write_text("<svg/>")
    (root / "dog" / "b.heic").write_bytes(b"\0")
    from headstart.errors import DataError

    with pytest.raises(DataError, match=r"dog has no images .*it holds 2 other file\(s\): \.heic, \.svg"):
        load_folder(root)


def test_images_in_the_root_point_to_the_unlabeled_flag(tmp_path):
    from headstart.errors import DataError

    Image.new("RGB", (6, 6)).save(tmp_path / "a.png")
    with pytest.raises(DataError) as info:
        load_folder(tmp_path)
    assert "--unlabeled" in str(info.value) and "load_unlabeled" not in str(info.value)


def test_unlabeled_folder_without_images_names_what_it_found(tmp_path):
    from headstart.errors import DataError

    (tmp_path / "a.svg").write_text("<svg/>")
    with pytest.raises(DataError, match=r"ignored 1 file\(s\) .*: \.svg"):
        load_unlabeled(tmp_path)

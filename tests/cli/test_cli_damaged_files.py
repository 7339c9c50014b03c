"""`headstart predict` on a folder of byte-mutated files of every format: it never crashes, names
every file it skipped, counts the other files and the decoder's complaints, and nothing of
Pillow's reaches the terminal raw."""

from __future__ import annotations

import io
import json
import os
import random
import subprocess
import sys

import numpy as np
from PIL import Image

from headstart import TrainConfig, train

FORMATS = {"jpg": "JPEG", "png": "PNG", "gif": "GIF", "webp": "WEBP", "bmp": "BMP", "tif": "TIFF"}


def _mutated_folder(root, n: int = 360):
    rng = random.Random(0)
    base = (np.random.default_rng(0).random((40, 48, 3)) * 255).astype(np.uint8)
    seeds = {}
    for ext, fmt in FORMATS.items():
        buf = io.BytesIO()
        img = Image.fromarray(base)
        kw = {"description": "headstart " * 20} if fmt == "TIFF" else {}
        (img.convert("P") if fmt == "GIF" else img).save(buf, fmt, **kw)
        seeds[ext] = buf.getvalue()
    root.mkdir(parents=True)
    for i in range(n):
        ext = list(FORMATS)[i % len(FORMATS)]
        data = bytearray(seeds[ext])
        for _ in range(rng.randint(1, 8)):
            pos = rng.randrange(len(data))
            op = rng.random()
            if op < 0.6:
                data[pos] = rng.randrange(256)
            elif op < 0.8:
                del data[pos : pos + rng.randint(1, 64)]
            else:
                data[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        if rng.random() < 0.1:
            data = data[: rng.randrange(1, len(data))]
        (root / f"{i:04d}.{ext}").write_bytes(bytes(data))
    for name in ("notes.txt", ".DS_Store", "vector.svg", "README"):
        (root / name).write_text("x")
    return root


def test_predict_on_damaged_files_reports_everything_and_prints_nothing_raw(shapes_folder, tmp_path, odd_files):
    run = train(TrainConfig(data=str(shapes_folder), output=str(tmp_path / "run"), strategy="linear", image_size=32,
                            epochs=1, device="cpu", progress=False)).run_dir
    folder = _mutated_folder(tmp_path / "damaged")
    for f in odd_files:  # decodes with a warning / cut short with one / logs an error
        (folder / f.name).write_bytes(f.read_bytes())
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    res = subprocess.run(
        [sys.executable, "-m", "headstart", "predict", str(run), str(folder), "--json", "--device", "cpu"],
        capture_output=True, text=True, env=env,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout)
    images = sorted(p.name for p in folder.iterdir() if p.suffix.lstrip(".") in FORMATS)
    predicted = [os.path.basename(r["path"]) for r in out["predictions"]]
    skipped = [os.path.basename(s["path"]) for s in out["skipped"]]
    assert sorted(predicted + skipped) == images  # every image file accounted for, once
    assert predicted and skipped and all(s["reason"] for s in out["skipped"])
    assert sorted(os.path.basename(p) for p in out["ignored"][str(folder)]) == [".DS_Store", "README", "notes.txt", "vector.svg"]
    assert [os.path.basename(w["path"]) for w in out["decoder_warnings"]] == ["warned.tif"]
    assert "Tag data larger than file" in out["decoder_warnings"][0]["warnings"]
    reasons = {os.path.basename(s["path"]): s["reason"] for s in out["skipped"]}
    assert "decoder warnings: Tag data larger than file" in reasons["broken.tif"]
    assert "More samples per pixel than can be decoded" in reasons["logged.tif"]
    # stderr holds only headstart's own lines: the one-line summaries, no Pillow warning or log
    err = res.stderr
    assert "ignored 4 file(s)" in err and "decoded despite warnings" in err
    for raw in ("Warning:", "warnings.warn", "TiffImagePlugin", "PIL", "Traceback", "More samples per pixel"):
        assert raw not in err, err[-3000:]

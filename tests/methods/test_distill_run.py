"""``headstart distill`` end to end on a small folder: the student learns on its teacher's labels
(and unlabeled images), records its teacher, and is compared with it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from headstart import TrainConfig, api, train
from headstart.errors import ConfigError, DataError


def _cfg(data, out, **kw):
    base = dict(data=str(data), output=str(out), image_size=32, device="cpu", progress=False, val_fraction=0.3, batch_size=8, epochs=2)
    return TrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def teacher(shapes_folder, tmp_path_factory) -> Path:
    return Path(train(_cfg(shapes_folder, tmp_path_factory.mktemp("t") / "teacher", strategy="linear", split_seed=4)).run_dir)


def test_the_student_trains_on_its_teachers_labels_and_records_it(teacher, shapes_folder, shapes_test_folder, tmp_path):
    from PIL import Image, ImageOps

    unlabeled = tmp_path / "unlabeled"  # other images than the labeled ones: the labeled squares, mirrored
    unlabeled.mkdir()
    for path in sorted((shapes_folder / "square").iterdir()):
        with Image.open(path) as img:
            ImageOps.mirror(img.convert("RGB")).save(unlabeled / f"m{path.stem}.png")
    out = api.distill(teacher, student="efficientnet_lite0", output=tmp_path / "student", unlabeled=str(unlabeled), temperature=2.0,
                      alpha=0.7, test=str(shapes_test_folder), image_size=24, device="cpu", progress=False, epochs=1, batch_size=8,
                      strategy="partial", freeze_stages=8)
    run = Path(out["run_dir"])
    config = json.loads(json.dumps(__import__("yaml").safe_load((run / "config.yaml").read_text())))
    assert config["requested"]["teacher"] == str(teacher) and config["requested"]["method"] == "distill"
    assert config["resolved"]["method_options"] == {"temperature": 2.0, "alpha": 0.7, "ratio": 3, "view": "weak", "cached_teacher": False}
    assert json.loads((run / "model.json").read_text())["teacher"] == str(teacher)
    mine, theirs = (json.loads((r / "splits.json").read_text()) for r in (run, teacher))
    assert mine["labeled_indices"] == theirs["labeled_indices"] and mine["train_indices"] == theirs["train_indices"]
    assert mine["unlabeled_folder_images"] == len(list(unlabeled.iterdir()))  # the pool was read
    saved = json.loads((run / "metrics.json").read_text())["distillation"]
    for side in ("teacher", "student"):
        r = saved[side]
        assert 0.0 <= r["test_accuracy"] <= 1.0 and r["parameters"] > 0 and r["file_bytes"] > 0
        assert r["images_per_second"] > 0 and r["latency_ms_batch1"] > 0
    assert saved["teacher"]["image_size"] == 32 and saved["student"]["image_size"] == 24
    assert saved["speedup"] == pytest.approx(saved["student"]["images_per_second"] / saved["teacher"]["images_per_second"])

    # --cached-teacher: the teacher's tables of the plain pool and of the plain labeled images, kept in its folder
    api.distill(teacher, student="resnet_small", output=tmp_path / "cached", unlabeled=str(unlabeled), cached_teacher=True,
                test=str(shapes_test_folder), device="cpu", progress=False, epochs=1, batch_size=8)
    assert len(list((teacher / "teacher-tables").glob("*.safetensors"))) == 2


def test_distill_refusals_name_the_fix(teacher, shapes_folder, tmp_path):
    with pytest.raises(ConfigError, match="--teacher RUN"):
        train(_cfg(shapes_folder, tmp_path / "a", method="distill"))
    with pytest.raises(ConfigError, match="not a finished run"):
        api.distill(tmp_path / "nowhere", output=tmp_path / "b")
    two = tmp_path / "two"
    for cls in ("disc", "square"):
        shutil.copytree(shapes_folder / cls, two / cls)
    with pytest.raises(DataError, match="same classes"):
        train(_cfg(two, tmp_path / "c", method="distill", teacher=str(teacher)))
    with pytest.raises(ConfigError, match="--teacher teaches"):
        train(_cfg(shapes_folder, tmp_path / "d", method="fixmatch", teacher=str(teacher), unlabeled=str(shapes_folder)))


def test_the_cli_distills_and_prints_the_comparison(teacher, shapes_test_folder, tmp_path):
    from typer.testing import CliRunner

    from headstart.cli import app

    res = CliRunner().invoke(app, ["distill", str(teacher), "--student", "resnet_small", "-T", "3", "--alpha", "0.5", "--epochs", "1", "--device", "cpu", "--no-progress", "--test", str(shapes_test_folder),
                                   "-o", str(tmp_path / "s"), "--json"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    out = json.loads(res.output[res.output.index("{"):])
    assert out["student"]["backbone"] == "resnet_small" and "speedup" in out
    assert "resnet_small (from scratch, by design)" in " ".join(res.output.split())  # not announced as a RANDOM init
    config = __import__("yaml").safe_load((tmp_path / "s" / "config.yaml").read_text())
    opts = config["resolved"]["method_options"]
    # the small student trains from scratch, every layer, at its own 32 px
    assert config["resolved"]["strategy"] == "full" and config["resolved"]["image_size"] == 32
    assert "built for 32-px inputs" in config["reasons"]["image_size"]
    assert opts["temperature"] == 3.0 and opts["alpha"] == 0.5 and opts["ratio"] == 0


def test_every_student_is_compared_with_the_teachers_recorded_test_score(tmp_path):
    import os

    from headstart.api_distill import compare

    fast = dict(data="digits", labels_per_class=5, image_size=32, device="cpu", progress=False, strategy="linear", epochs=1)
    teacher = Path(train(TrainConfig(output=str(tmp_path / "t"), **fast)).run_dir)
    student = Path(train(TrainConfig(output=str(tmp_path / "s"), seed=1, **fast)).run_dir)
    first = compare(teacher, student, device="cpu", timed=8)
    recorded = json.loads((teacher / "eval-test.json").read_text())
    assert first["teacher"]["test_accuracy"] == recorded["accuracy"]  # scored once on the official test split, and kept
    recorded["accuracy"] = 0.123  # planted: the next comparison must read it, not score the teacher again
    (teacher / "eval-test.json").write_text(json.dumps(recorded))
    assert compare(teacher, student, device="cpu", timed=8)["teacher"]["test_accuracy"] == 0.123
    weights = teacher / "model.safetensors"
    later = (teacher / "eval-test.json").stat().st_mtime + 5
    os.utime(weights, (later, later))  # weights newer than the score: scored again
    assert compare(teacher, student, device="cpu", timed=8)["teacher"]["test_accuracy"] == first["teacher"]["test_accuracy"]

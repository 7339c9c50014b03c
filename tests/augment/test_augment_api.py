"""Augmentation through train / eval / predict / audit / preview and the CLI, on a small folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from headstart import TrainConfig, evaluate, train
from headstart.api import (
    Predictor,
    augment_audit,
    augment_preview,
    predict,
)
from headstart.augment import TRANSFORMS
from headstart.augment.store import audit_store
from headstart.cli import app
from headstart.errors import ConfigError, HeadstartError

FAST = dict(image_size=48, progress=False, device="cpu")


@pytest.fixture(scope="module")
def aug_run(shapes_folder, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("aug") / "std"
    train(TrainConfig(
        data=str(shapes_folder), output=str(out), strategy="partial", epochs=2, augment="standard", cutmix=1.0,
        invariances="hflip,rotate:10,brightness;stripes=hflip", **FAST,
    ))
    return out


def test_the_run_records_the_policy_it_applied(aug_run):
    cfg = yaml.safe_load((aug_run / "config.yaml").read_text())
    aug = cfg["augmentation"]
    assert aug["policy"] == "standard" and aug["strength"] == 1.0 and aug["mix"] == "CutMix α=1"
    assert aug["applied"] == "hflip:0.5,rotate:10,brightness:0.3; stripes: hflip:0.5"
    assert any("crop:0.6 dropped" in n for n in aug["notes"])
    assert cfg["resolved"]["cutmix"] == 1.0 and cfg["resolved"]["invariances"] == "hflip,rotate:10,brightness;stripes=hflip"
    assert "augmentation" in cfg["reasons"] and "invariances" in cfg["reasons"]


def test_a_frozen_body_with_augmentation_never_reads_the_feature_cache(shapes_folder, tmp_path):
    plain = train(TrainConfig(data=str(shapes_folder), output=str(tmp_path / "a"), strategy="linear", epochs=2, **FAST))
    m = json.loads((plain.run_dir / "metrics.json").read_text())
    assert m["feature_cache"]["misses"] + m["feature_cache"]["hits"] >= 1
    aug = train(TrainConfig(data=str(shapes_folder), output=str(tmp_path / "b"), strategy="linear", epochs=2, augment="light", **FAST))
    m = json.loads((aug.run_dir / "metrics.json").read_text())
    assert "feature_cache" not in m, "augmented images go through the frozen body at every step"
    cfg = yaml.safe_load((aug.run_dir / "config.yaml").read_text())
    assert "no feature cache" in cfg["reasons"]["features"] and cfg["resolved"]["freeze_stages"] == 9
    mixed = train(TrainConfig(data=str(shapes_folder), output=str(tmp_path / "c"), strategy="linear", epochs=1, mixup=0.2, **FAST))
    assert "feature_cache" not in json.loads((mixed.run_dir / "metrics.json").read_text())


@pytest.mark.parametrize(
    "fields, words",
    [
        ({"strategy": "knn", "augment": "light"}, ["knn memorises features"]),
        ({"strategy": "knn", "cutmix": 1.0}, ["knn memorises features"]),
        ({"augment": "wobble:3"}, ["unknown transform 'wobble'"]),
        ({"invariances": "hflip;triangle=hflip"}, ["triangle", "disc"]),
        ({"mixup": -0.5}, ["--mixup must be at least 0", "0 turns it off"]),
    ],
)
def test_bad_augmentation_settings_fail_before_anything_is_written(shapes_folder, tmp_path, fields, words):
    out = tmp_path / "run"
    with pytest.raises(HeadstartError) as e:
        train(TrainConfig(data=str(shapes_folder), output=str(out), epochs=1, **{"strategy": "partial", **fields}, **FAST))
    for w in words:
        assert w in str(e.value)
    assert not out.exists()


def test_tta_averages_the_views_and_reports_accuracy_with_and_without(aug_run, shapes_test_folder):
    plain = evaluate(aug_run, str(shapes_test_folder), device="cpu")
    m = evaluate(aug_run, str(shapes_test_folder), device="cpu", tta=True)
    t = m["tta"]
    # the run declared hflip (and not crop) label-safe: the zoom view is left out
    assert t["views"] == ["identity", "hflip:1"] and "crop:0.85" in t["left_out"][0]
    assert t["accuracy_without_tta"] == plain["accuracy"] == t["accuracy_per_view"]["identity"]
    assert m["accuracy"] == t["accuracy"] and m["written_to"].endswith("-tta.json")
    # against a naive reference: the mean of the probabilities of the image and of its mirror
    p = Predictor(aug_run, device="cpu")
    x = torch.randint(0, 256, (5, 3, 48, 48), dtype=torch.uint8)
    views, _ = p.tta_views()
    expected = (p.proba_tensor(x) + p.proba_tensor(x.flip(-1))) / 2
    assert np.allclose(p.proba_tensor(x, views=views), expected, atol=1e-6)
    out = predict(aug_run, [str(shapes_test_folder)], device="cpu", tta=True)
    assert out["tta"]["views"] == ["identity", "hflip:1"] and len(out["predictions"]) == 18


def test_audit_writes_its_report_and_train_warns_about_flagged_transforms(aug_run, shapes_folder, shapes_test_folder, tmp_path):
    res = augment_audit(aug_run, str(shapes_test_folder), per_class=4, families=["hflip", "rotate"], device="cpu")
    assert res["num_images"] == 12 and set(res["families"]) == {"hflip", "rotate"}
    assert [r["family"] for r in res["rows"]] == ["hflip"] + ["rotate"] * len(TRANSFORMS.get("rotate").audit_levels)
    saved = json.loads((aug_run / "augment-audit.json").read_text())
    assert saved["run_policy"].startswith("hflip:0.5,rotate:10") and "run_policy_flagged" in saved
    store = audit_store(str(shapes_folder))
    assert json.loads(store.read_text())["run"] == str(aug_run)
    # a train on the same data whose policy holds a transform an audit flagged says so
    store.write_text(json.dumps({**res, "families": {"vflip": {"flagged_at": 1.0, "safe_up_to": None}}, "max_drop": 0.2,
                                 "recommended_invariances": "hflip"}))
    run = train(TrainConfig(data=str(shapes_folder), output=str(tmp_path / "w"), strategy="partial", epochs=1,
                            augment="crop:0.8,vflip", **FAST))
    warnings = yaml.safe_load((run.run_dir / "config.yaml").read_text())["augmentation"]["audit_warnings"]
    assert len(warnings) == 1 and "vflip:0.5" in warnings[0] and "--invariances 'hflip'" in warnings[0]
    store.unlink()
    with pytest.raises(ConfigError):
        augment_audit(aug_run, str(shapes_test_folder), families=["randaugment"], device="cpu")


def test_preview_sheet_shows_originals_beside_augmented_draws(shapes_folder, tmp_path):
    path = augment_preview(str(shapes_folder), tmp_path / "sheet.png", policy="strong", rows=4, copies=3, image_size=40)
    sheet = np.asarray(Image.open(path))
    assert sheet.shape == (44 + 4 * 100 + 4, 120 + 4 * 100 + 4, 3)
    cells = [sheet[48 : 48 + 96, 124 + c * 100 : 124 + c * 100 + 96] for c in range(4)]
    assert all(np.abs(cells[0].astype(int) - c.astype(int)).mean() > 1 for c in cells[1:]), "each draw differs from the original"


def test_cli_augment_commands(aug_run, shapes_folder, shapes_test_folder, tmp_path):
    from typer.testing import CliRunner

    runner = CliRunner()
    out = runner.invoke(app, ["augment", "list"], catch_exceptions=False).output
    assert all(w in out for w in ("standard", "randaugment", "vflip", "degrees"))
    res = runner.invoke(app, ["augment", "preview", str(shapes_folder), "-o", str(tmp_path / "p.png"), "--rows", "2",
                              "--copies", "2", "--image-size", "32"], catch_exceptions=False)
    assert res.exit_code == 0 and (tmp_path / "p.png").is_file()
    res = runner.invoke(app, ["augment", "audit", str(aug_run), str(shapes_test_folder), "--per-class", "3", "--families",
                              "vflip", "--device", "cpu", "--json"], catch_exceptions=False)
    assert res.exit_code == 0 and json.loads(res.stdout)["families"].keys() == {"vflip"}  # notes go to stderr
    res = runner.invoke(app, ["augment", "audit", str(aug_run), str(shapes_test_folder), "--per-class", "3", "--families",
                              "hflip", "--device", "cpu"], catch_exceptions=False)
    assert "label-safety audit" in res.output and "supported invariances" in res.output
    res = runner.invoke(app, ["eval", str(aug_run), str(shapes_test_folder), "--tta", "--device", "cpu"], catch_exceptions=False)
    assert "test-time augmentation over 2 views" in res.output
    audit_store(str(shapes_folder)).unlink(missing_ok=True)

"""The CLI and Python API end to end on a small folder of real image files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file
from typer.testing import CliRunner

from headstart import ImageClassifier, TrainConfig, evaluate, train
from headstart.backbones import BACKBONES, create_backbone
from headstart.cli import app
from headstart.errors import RunError
from headstart.runfolder import load_run

runner = CliRunner()

FAST = ["--image-size", "48", "--no-progress", "--device", "cpu"]


def invoke(*args: str):
    """Run the CLI in-process; HeadstartErrors come back as exit code 2 with the message."""
    from headstart.errors import HeadstartError

    try:
        res = runner.invoke(app, list(args), catch_exceptions=False)
    except HeadstartError as exc:
        return 2, str(exc)
    return res.exit_code, res.output


@pytest.fixture(scope="module")
def linear_run(shapes_folder, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "lin"
    code, text = invoke("train", str(shapes_folder), "-o", str(out), "--strategy", "linear", "--epochs", "30", *FAST)
    assert code == 0, text
    return out


def test_train_writes_a_complete_run_folder(linear_run, shapes_folder):
    for f in ("config.yaml", "model.safetensors", "model.json", "metrics.json", "splits.json"):
        assert (linear_run / f).is_file(), f
    assert any((linear_run / "tb").iterdir()), "TensorBoard events are written"
    meta = json.loads((linear_run / "model.json").read_text())
    assert meta["classes"] == ["disc", "square", "stripes"]
    assert meta["backbone"] == "efficientnet_lite0" and meta["pretrained"]
    assert meta["preprocess"]["mean"] == [0.5, 0.5, 0.5] and meta["image_size"] == 48
    assert meta["frozen_stages"] == len(meta["stages"]) and meta["cam_layer"] == "conv_head"
    cfg = yaml.safe_load((linear_run / "config.yaml").read_text())
    assert cfg["resolved"]["epochs"] == 30 and cfg["resolved"]["augment"] == "none"
    assert "val_fraction" in cfg["reasons"]  # every decided default carries its reason
    metrics = json.loads((linear_run / "metrics.json").read_text())
    assert metrics["num_train"] == 30 and len(metrics["history"]) == 30
    splits = json.loads((linear_run / "splits.json").read_text())
    assert [Path(p).name for p, _ in splits["skipped_files"]] == ["broken.jpg"]
    # weights are plain tensors: readable without unpickling anything
    assert all(isinstance(v, torch.Tensor) for v in load_file(str(linear_run / "model.safetensors")).values())


def test_linear_probe_keeps_the_pretrained_body_exactly(linear_run):
    run = load_run(linear_run)
    ref = create_backbone("efficientnet_lite0", num_classes=3)
    for (n, a), (_, b) in zip(run.model.stages.state_dict().items(), ref.stages.state_dict().items(), strict=True):
        assert torch.equal(a, b), n


def test_eval_metrics_match_a_recount_from_predictions(linear_run, shapes_test_folder):
    code, text = invoke("eval", str(linear_run), str(shapes_test_folder), "--json", "--device", "cpu")
    assert code == 0, text
    m = json.loads(text)
    pred = ImageClassifier.load(linear_run, device="cpu")
    files = sorted(shapes_test_folder.rglob("*.png"))
    truth = [f.parent.name for f in files]
    got = pred.predict(files)
    recount = float(np.mean([a == b for a, b in zip(got, truth, strict=True)]))
    assert m["accuracy"] == pytest.approx(recount)
    assert m["accuracy"] >= 0.8, "pretrained features separate discs, squares and stripes"
    cm = np.array(m["confusion_matrix"])
    assert cm.sum() == 18 and np.trace(cm) == round(m["accuracy"] * 18)
    for row in m["per_class"]:
        assert row["support"] == 6
    assert (linear_run / f"eval-{shapes_test_folder.name}.json").is_file()
    code, text = invoke("eval", str(linear_run), str(shapes_test_folder), "--device", "cpu")
    assert code == 0 and "accuracy" in text and "confusion matrix" in text


def test_predict_top_k_table_and_json(linear_run, shapes_test_folder, tmp_path):
    (tmp_path / "bad.png").write_bytes(b"")
    code, text = invoke(
        "predict", str(linear_run), str(shapes_test_folder / "disc"), str(tmp_path / "bad.png"), "--top-k", "2", "--json", "--device", "cpu"
    )
    assert code == 0, text
    out = json.loads(text)
    assert len(out["predictions"]) == 6
    for row in out["predictions"]:
        probs = [t["probability"] for t in row["top"]]
        assert len(probs) == 2 and probs[0] >= probs[1] and sum(probs) <= 1 + 1e-6
    assert out["skipped"][0]["path"].endswith("bad.png")
    assert sum(r["top"][0]["class"] == "disc" for r in out["predictions"]) >= 5
    code, text = invoke("predict", str(linear_run), str(shapes_test_folder / "disc" / "t0.png"), "--device", "cpu")
    assert code == 0 and "t0.png" in text


def test_partial_training_moves_only_the_unfrozen_stages(shapes_folder, tmp_path):
    res = train(
        TrainConfig(
            data=str(shapes_folder),
            output=str(tmp_path / "p"),
            strategy="partial",
            freeze_stages=5,
            image_size=48,
            epochs=2,
            device="cpu",
            progress=False,
        )
    )
    run = load_run(res.run_dir)
    ref = create_backbone("efficientnet_lite0", num_classes=3)
    for i in range(run.model.num_stages):
        same = all(
            torch.equal(a, b) for a, b in zip(run.model.stages[i].state_dict().values(), ref.stages[i].state_dict().values(), strict=True)
        )
        assert same == (i < 5), f"stage {i} {'changed' if i < 5 else 'did not train'}"
    assert json.loads((res.run_dir / "model.json").read_text())["frozen_stages"] == 5
    assert res.resolved["augment"] == "light" and len(res.history) == 2


def test_full_with_warmup_and_knn_via_python_api(shapes_folder, shapes_test_folder, tmp_path):
    res = train(
        TrainConfig(
            data=str(shapes_folder), output=str(tmp_path / "f"), strategy="full", warmup_epochs=1, epochs=1,
            image_size=40, device="cpu", progress=False,
        )
    )
    assert [r["phase"] for r in res.history] == ["warmup", "train"]
    clf = ImageClassifier(strategy="knn", image_size=48, device="cpu", progress=False).fit(
        str(shapes_folder), output=str(tmp_path / "k")
    )
    assert clf.classes_ == ["disc", "square", "stripes"]
    m = evaluate(clf.run_dir_, str(shapes_test_folder), device="cpu")
    assert m["accuracy"] >= 0.8
    # the kNN bank round-trips through the run folder: same answers after loading
    again = ImageClassifier.load(clf.run_dir_, device="cpu")
    files = sorted(shapes_test_folder.rglob("*.png"))
    np.testing.assert_allclose(again.predict_proba(files), clf.predict_proba(files))


def test_digits_builtin_with_few_labels_then_official_test_split(tmp_path):
    res = train(TrainConfig(data="digits", output=str(tmp_path / "d"), strategy="knn", labels_per_class=5, device="cpu", progress=False))
    assert res.val_accuracy is None  # 5 per class: no validation split, said in the config
    cfg = yaml.safe_load((res.run_dir / "config.yaml").read_text())
    assert "fewer than 20" in cfg["reasons"]["val_fraction"]
    m = evaluate(res.run_dir, device="cpu")
    assert m["num_images"] == 451  # the fixed held-out split, never the training images
    assert m["accuracy"] > 0.5  # chance is 0.1: ImageNet features carry over to 8-px digits
    assert m["caution"] is None


def test_eval_rebuilds_the_runs_own_splits(tmp_path):
    res = train(TrainConfig(data="digits", output=str(tmp_path / "d"), strategy="knn", labels_per_class=25, device="cpu", progress=False))
    splits = json.loads((res.run_dir / "splits.json").read_text())
    assert len(splits["val_indices"]) == 50 and len(splits["train_indices"]) == 200
    assert not set(splits["val_indices"]) & set(splits["train_indices"])
    m = evaluate(res.run_dir, "val", device="cpu")
    assert m["num_images"] == 50
    assert m["accuracy"] == pytest.approx(res.val_accuracy)  # same images, same number as training saw
    t = evaluate(res.run_dir, "train", device="cpu")
    assert t["num_images"] == 200 and "optimistic" in t["caution"]
    assert (res.run_dir / "eval-val.json").is_file() and (res.run_dir / "eval-train.json").is_file()


def test_config_file_and_unlabeled_folder(shapes_folder, shapes_test_folder, tmp_path):
    (tmp_path / "c.yaml").write_text("strategy: knn\nimage_size: 40\nknn_k: 3\nseed: 4\n")
    code, text = invoke(
        "train", str(shapes_folder), "-o", str(tmp_path / "r"), "--config", str(tmp_path / "c.yaml"), "--seed", "7",
        "--unlabeled", str(shapes_test_folder), "--no-progress", "--device", "cpu",
    )
    assert code == 0, text
    cfg = yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())["resolved"]
    assert (cfg["strategy"], cfg["image_size"], cfg["knn_k"], cfg["seed"]) == ("knn", 40, 3, 7)  # flags beat the file
    splits = json.loads((tmp_path / "r" / "splits.json").read_text())
    assert splits["unlabeled_folder_images"] == 18
    m = evaluate(tmp_path / "r", device="cpu")  # default for a folder run: the folder itself
    assert "optimistic" in m["caution"] and m["num_images"] == 30


def test_bad_input_is_a_clear_error(shapes_folder, linear_run, tmp_path):
    code, text = invoke("train", str(shapes_folder), "-o", str(tmp_path / "x"), "--on-bad-image", "error", *FAST)
    assert code == 2 and "broken.jpg" in text and "--on-bad-image skip" in text
    single = tmp_path / "single" / "only"
    single.mkdir(parents=True)
    for f in list((shapes_folder / "square").iterdir())[:3]:
        (single / f.name).write_bytes(f.read_bytes())
    code, text = invoke("train", str(tmp_path / "single"), "-o", str(tmp_path / "y"), *FAST)
    assert code == 2 and "only" in text and "two" in text
    code, text = invoke("train", str(shapes_folder), "-o", str(linear_run), *FAST)
    assert code == 2 and "--overwrite" in text  # a finished run is never replaced by accident
    code, text = invoke("train", str(tmp_path / "nope"), *FAST)
    assert code == 2 and "fashion-mnist" in text
    with pytest.raises(RunError, match="not a finished run"):
        load_run(tmp_path / "single")
    code, text = invoke("train", str(shapes_folder), "-o", str(tmp_path / "z"), "--backbone", "nope", *FAST)
    assert code != 0 and "efficientnet_lite0" in text


def test_models_and_help_pages():
    code, text = invoke("models")
    assert code == 0
    for name in BACKBONES.names():
        assert name in text
    assert "installed" in text and "--weights" in text and "scratch" in text  # resnet_small needs no weights
    for cmd in ("train", "eval", "predict", "models", "demo"):
        code, text = invoke(cmd, "--help")
        assert code == 0 and "Usage" in text

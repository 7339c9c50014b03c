"""The unlabeled methods through ``headstart train``: a teacher's table reaches the student and
is kept in its run; label spreading feeds a head on cached features; a kill -9 in the middle of
consistency training resumes bit for bit; bad combinations are refused before training."""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image, ImageOps
from safetensors.torch import load_file

from headstart import TrainConfig, train
from headstart.errors import ConfigError


@pytest.fixture(scope="module")
def pool_folder(shapes_folder, tmp_path_factory):
    """The labeled shapes mirrored (other content), under class subfolders: hidden truth."""
    out = tmp_path_factory.mktemp("pool")
    for path in sorted(p for p in shapes_folder.rglob("*") if p.is_file()):
        try:
            with Image.open(path) as img:
                (out / path.parent.name).mkdir(exist_ok=True)
                ImageOps.mirror(img.convert("RGB")).save(out / path.parent.name / f"m{path.stem}.png")
        except OSError:
            continue
    return out


def _cfg(data, out, **kw):
    base = dict(data=str(data), output=str(out), image_size=32, device="cpu", progress=False, val_fraction=0.3, batch_size=8)
    return TrainConfig(**{**base, **kw})


def test_a_teacher_runs_table_reaches_the_student_and_stays_in_its_run(shapes_folder, pool_folder, tmp_path):
    from headstart.data import load_unlabeled
    from headstart.data.tensors import images_tensor
    from headstart.predictor import Predictor

    teacher = train(_cfg(shapes_folder, tmp_path / "t", strategy="partial", freeze_stages=6, epochs=3))
    student = train(_cfg(
        shapes_folder, tmp_path / "s", strategy="partial", freeze_stages=6, epochs=2, unlabeled=str(pool_folder), method="pseudolabel",
        teacher=str(teacher.run_dir), method_options={"view": "strong", "targets": "soft", "threshold": "0.0"},
    ))
    table = load_file(str(student.run_dir / "teacher_targets.safetensors"))["probs"]
    pool = load_unlabeled(str(pool_folder))
    expected = Predictor(teacher.run_dir, device="cpu").proba_tensor(images_tensor(pool, size=32, num_workers=0))
    assert table.shape == (30, 3)
    np.testing.assert_allclose(table.numpy(), expected, atol=1e-5)
    metrics = json.loads((student.run_dir / "metrics.json").read_text())
    truth = np.array([["disc", "square", "stripes"].index(Path(p).parent.name) for p in pool.images])
    assert metrics["teacher"]["accuracy"] == pytest.approx(float((expected.argmax(1) == truth).mean()))
    assert all(row["pool_coverage"] == 1.0 for row in metrics["history"])  # threshold 0: every image kept
    requested = yaml.safe_load((student.run_dir / "config.yaml").read_text())["requested"]
    assert requested["teacher"] == str(teacher.run_dir) and requested["method"] == "pseudolabel"
    splits = json.loads((student.run_dir / "splits.json").read_text())
    assert splits["unlabeled"]["used"] == 30 and splits["unlabeled"]["hidden_truth"] == 30

    # two teachers, comma-separated: the mean of their probabilities, each one's score recorded
    other = train(_cfg(shapes_folder, tmp_path / "t2", strategy="partial", freeze_stages=6, epochs=3, seed=1, split_seed=0))
    both = train(_cfg(
        shapes_folder, tmp_path / "s2", strategy="partial", freeze_stages=6, epochs=1, unlabeled=str(pool_folder), method="pseudolabel",
        teacher=f"{teacher.run_dir},{other.run_dir}", method_options={"view": "plain", "targets": "soft", "threshold": "0.0"},
    ))
    second = Predictor(other.run_dir, device="cpu").proba_tensor(images_tensor(pool, size=32, num_workers=0))
    assert np.abs(second - expected).max() > 1e-3  # two different teachers
    mean = load_file(str(both.run_dir / "teacher_targets.safetensors"))["probs"]
    np.testing.assert_allclose(mean.numpy(), (expected + second) / 2, atol=1e-5)
    members = json.loads((both.run_dir / "metrics.json").read_text())["teacher"]["members"]
    assert [m["accuracy"] for m in members] == pytest.approx([float((p.argmax(1) == truth).mean()) for p in (expected, second)])
    assert json.loads((other.run_dir / "splits.json").read_text())["train_indices"] == splits["train_indices"]  # --split-seed 0


def test_table_graph_spreads_the_labels_over_the_teachers_own_features(shapes_folder, pool_folder, tmp_path):
    from headstart.data import load_unlabeled
    from headstart.data.tensors import images_tensor
    from headstart.predictor import Predictor
    from headstart.runfolder import rebuild_split
    from headstart.semi.propagate import graph_table

    teacher = train(_cfg(shapes_folder, tmp_path / "t", strategy="partial", freeze_stages=6, epochs=3))
    student = train(_cfg(
        shapes_folder, tmp_path / "s", strategy="partial", freeze_stages=6, epochs=1, unlabeled=str(pool_folder), method="pseudolabel",
        teacher=str(teacher.run_dir), method_options={"view": "plain", "targets": "soft", "threshold": "0.0", "table": "graph"},
    ))
    table = load_file(str(student.run_dir / "teacher_targets.safetensors"))["probs"].numpy()
    # the same spreading over features PyTorch computes image by image, from the run's own training images and labels
    p = Predictor(teacher.run_dir, device="cpu")
    train_set, _, _ = rebuild_split(Predictor(student.run_dir, device="cpu").run, "train", "skip")
    pool = load_unlabeled(str(pool_folder))
    x_l, x_p = images_tensor(train_set, size=32, num_workers=0), images_tensor(pool, size=32, num_workers=0)
    p.model.eval()
    with torch.inference_mode():
        f_l, f_p = (torch.cat([p.model.forward_features(p.prepare(x[i : i + 1])) for i in range(len(x))]).numpy() for x in (x_l, x_p))
    want = graph_table([(f_l, f_p)], np.asarray(train_set.labels), 3).probs
    assert table.shape == (30, 3) and len(x_l) == 21
    np.testing.assert_allclose(table, want, atol=1e-3)
    head = p.proba_tensor(x_p)
    assert np.abs(head - table).max() > 0.05  # not the teacher's own predictions
    truth = np.array([["disc", "square", "stripes"].index(Path(f).parent.name) for f in pool.images])
    metrics = json.loads((student.run_dir / "metrics.json").read_text())
    assert metrics["teacher"]["accuracy"] == pytest.approx(float((want.argmax(1) == truth).mean()))
    assert metrics["graph"]["head"]["accuracy"] == pytest.approx(float((head.argmax(1) == truth).mean()))
    assert (metrics["graph"]["k"], metrics["graph"]["networks"], metrics["graph"]["n_labeled"]) == (10, 1, 21)
    with pytest.raises(ConfigError, match="table must be one of head, graph"):
        train(_cfg(shapes_folder, tmp_path / "bad", epochs=1, unlabeled=str(pool_folder), method="pseudolabel",
                   teacher=str(teacher.run_dir), method_options={"table": "knn"}))
    for teacher_given in (None, "propagate"):  # refused before anything trains
        with pytest.raises(ConfigError, match="table=graph spreads the labels over a --teacher run's own features"):
            train(_cfg(shapes_folder, tmp_path / "bad2", epochs=1, unlabeled=str(pool_folder), method="pseudolabel",
                       teacher=teacher_given, method_options={"table": "graph"}))
        assert not (tmp_path / "bad2").exists()


def test_align_balances_the_teachers_table_in_the_students_run(shapes_folder, pool_folder, tmp_path):
    from headstart.data import load_unlabeled
    from headstart.data.tensors import images_tensor
    from headstart.predictor import Predictor
    from headstart.runfolder import rebuild_split
    from headstart.semi.report import pool_section
    from headstart.semi.teacher import balance_table

    teacher = train(_cfg(shapes_folder, tmp_path / "t", strategy="partial", freeze_stages=6, epochs=1))
    student = train(_cfg(
        shapes_folder, tmp_path / "s", strategy="partial", freeze_stages=6, epochs=1, unlabeled=str(pool_folder), method="pseudolabel",
        teacher=str(teacher.run_dir), method_options={"view": "plain", "targets": "soft", "threshold": "0.0", "align": "true"},
    ))
    pool = load_unlabeled(str(pool_folder))
    raw = Predictor(teacher.run_dir, device="cpu").proba_tensor(images_tensor(pool, size=32, num_workers=0))
    train_set, _, _ = rebuild_split(Predictor(student.run_dir, device="cpu").run, "train", "skip")
    labels = np.asarray(train_set.labels)
    table = load_file(str(student.run_dir / "teacher_targets.safetensors"))["probs"].numpy()
    metrics = json.loads((student.run_dir / "metrics.json").read_text())
    shares = np.array(metrics["aligned"]["shares"])
    np.testing.assert_allclose(shares, np.bincount(labels, minlength=3) / len(labels), atol=1e-4)
    np.testing.assert_allclose(table, balance_table(torch.from_numpy(raw), shares).numpy(), atol=1e-4)
    np.testing.assert_allclose(table.mean(0), shares, atol=1e-3)
    classes = Predictor(student.run_dir, device="cpu").classes
    truth = np.array([classes.index(Path(p).parent.name) for p in pool.images])
    assert metrics["aligned"]["accuracy_before"] == pytest.approx(float((raw.argmax(1) == truth).mean()))
    assert metrics["teacher"]["accuracy"] == pytest.approx(float((table.argmax(1) == truth).mean()))
    assert metrics["aligned"]["changed"] == pytest.approx(float((table.argmax(1) != raw.argmax(1)).mean()), abs=1e-4)
    section = pool_section(student.run_dir)
    assert any("balanced to the labeled images' class shares" in str(block) for block in section.blocks)


def test_a_teachers_table_is_kept_in_its_folder_for_its_next_student(shapes_folder, pool_folder, tmp_path, monkeypatch):
    from headstart.data import load_unlabeled
    from headstart.data.tensors import images_tensor
    from headstart.predictor import Predictor
    from headstart.runfolder import clear_replaced_run
    from headstart.semi.teacher import TABLES_DIR, member_tables, table_key

    teacher = train(_cfg(shapes_folder, tmp_path / "t", strategy="partial", freeze_stages=6, epochs=2))
    pool_x = images_tensor(load_unlabeled(str(pool_folder)), size=32, num_workers=0)
    calls = []
    real = Predictor.proba_tensor
    monkeypatch.setattr(Predictor, "proba_tensor", lambda self, x, **kw: calls.append(len(x)) or real(self, x, **kw))
    classes = ["disc", "square", "stripes"]
    first = member_tables(str(teacher.run_dir), pool_x, classes, device="cpu")[0]
    assert calls == [30] and len(list((teacher.run_dir / TABLES_DIR).glob("*.safetensors"))) == 1
    again = member_tables(str(teacher.run_dir), pool_x, classes[::-1], device="cpu")[0]  # another class order: same table, reordered
    assert calls == [30], "the second student of the same teacher and pool labelled the pool again"
    torch.testing.assert_close(again, first.flip(1))
    changed = pool_x.clone()
    changed[0, 0, 0, 0] ^= 1  # one pixel of one image: another pool, another table
    member_tables(str(teacher.run_dir), changed, classes, device="cpu")
    assert calls == [30, 30]
    kept = teacher.run_dir / TABLES_DIR / f"{table_key(teacher.run_dir, pool_x)}.safetensors"
    kept.write_bytes(b"damaged")  # a damaged table is labelled again, never a crash
    torch.testing.assert_close(member_tables(str(teacher.run_dir), pool_x, classes, device="cpu")[0], first)
    assert calls == [30, 30, 30]
    assert "teacher-tables" in clear_replaced_run(teacher.run_dir)  # a new run in the folder takes its old tables with it


def test_label_spreading_feeds_a_linear_head_on_cached_features(shapes_folder, pool_folder, tmp_path):
    res = train(_cfg(
        shapes_folder, tmp_path / "p", strategy="linear", epochs=3, unlabeled=str(pool_folder), method="pseudolabel",
        teacher="propagate", method_options={"view": "plain", "threshold": "0.0", "targets": "soft"},
    ))
    metrics = json.loads((res.run_dir / "metrics.json").read_text())
    assert metrics["propagation"]["n_pool"] == 30 and metrics["teacher"]["source"] == "propagate"
    cache = metrics["feature_cache"]
    assert cache["hits"] + cache["misses"] >= 3  # the head trained on cached features: train, validation and pool sets
    assert 0 <= metrics["history"][-1]["train_unsup_loss"] and "pool_pseudo_acc" in metrics["history"][-1]


def test_bad_combinations_are_refused_before_any_data_is_read(tmp_path):
    for kw, msg in [
        (dict(method="fixmatch"), "learns from unlabeled images: give --unlabeled"),
        (dict(method="fixmatch", unlabeled="pool"), "--labels-per-class K"),
        (dict(method="fixmatch", unlabeled="x", teacher="runs/t"), "--teacher teaches --method pseudolabel"),
        (dict(method="pseudolabel", unlabeled="x", method_options={"view": "blurry"}), "view must be one of"),
        (dict(method="pseudolabel", unlabeled="x", teacher="runs/t", method_options={"thresholds": "flexmatch"}), "fixed table"),
        (dict(method="fixmatch", unlabeled="x", cutmix=1.0), "does not mix batches"),
        (dict(method="pseudolabel", unlabeled="x", teacher=f"{tmp_path}/nope"), "nope is not a finished run folder"),
        (dict(teachers=2), "--teachers N is how many"),
        (dict(teachers=2, method="pseudolabel", unlabeled="x"), "--teachers N is how many"),
        (dict(teachers=0, unlabeled="x"), "at least 1"),
    ]:
        with pytest.raises(ConfigError, match=msg):
            train(_cfg(tmp_path / "missing-data", tmp_path / "o", **kw))


def _cmd(data, pool, out, *extra):
    return [
        sys.executable, "-m", "headstart", "train", str(data), "-o", str(out), "--strategy", "partial", "--freeze-stages", "6",
        "--image-size", "32", "--epochs", "20", "--val-fraction", "0.3", "--batch-size", "8", "--checkpoint-every", "2",
        "--device", "cpu", "--no-progress", "--unlabeled", str(pool), "--method", "fixmatch",
        "-O", "thresholds=flexmatch", "-O", "threshold=0.5", "-O", "align=true", "-O", "ema_decay=0.9", *extra,
    ]


def test_kill_minus_nine_in_consistency_training_then_resume_matches_uninterrupted(shapes_folder, pool_folder, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "2"}
    ref = tmp_path / "ref"
    subprocess.run(_cmd(shapes_folder, pool_folder, ref), check=True, env=env, capture_output=True)
    run = tmp_path / "killed"
    proc = subprocess.Popen(_cmd(shapes_folder, pool_folder, run), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = run / "checkpoint" / "last.pt"
    deadline, killed_at = time.time() + 240, None
    while time.time() < deadline and proc.poll() is None:
        if ckpt.exists():
            try:
                state = torch.load(ckpt, weights_only=True)
            except Exception:  # noqa: BLE001 - atomic writes make this rare; try again
                continue
            if state["step"] >= 13:
                proc.send_signal(signal.SIGKILL)
                killed_at = state["step"]
                break
        time.sleep(0.02)
    proc.wait()
    assert killed_at is not None, "the run finished before it could be killed; make it longer"
    res = subprocess.run([sys.executable, "-m", "headstart", "train", "--resume", str(run), "--no-progress"], env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr + res.stdout
    a, b = load_file(str(ref / "model.safetensors")), load_file(str(run / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ha, hb = (json.loads((r / "metrics.json").read_text())["history"] for r in (ref, run))
    assert ha == hb and any(row["pool_thresholds"] != ha[0]["pool_thresholds"] for row in ha)  # the curriculum moved, and resumed


def test_auto_with_unlabeled_images_trains_a_teacher_then_a_noisy_student(shapes_folder, big_pool, tmp_path, monkeypatch):
    from headstart.export import passes

    real, seen = passes.measure, []

    def measure(*a, **kw):  # the probe as measured, with PyTorch's own speed made a third of the pass's
        got = real(*a, **kw)
        seen.append({**got, "eager_ips": got["pass_ips"] / 3})
        return seen[-1]

    monkeypatch.setattr(passes, "measure", measure)
    out = tmp_path / "auto"
    res = train(_cfg(shapes_folder, out, strategy="partial", freeze_stages=6, epochs=2, unlabeled=str(big_pool), teachers=2))
    assert res.run_dir == out
    for t in ("teacher", "teacher-2"):
        assert json.loads((out / t / "metrics.json").read_text())["interrupted"] is False
    seeds = [yaml.safe_load((out / t / "config.yaml").read_text())["requested"] for t in ("teacher", "teacher-2")]
    assert [(c["seed"], c["split_seed"]) for c in seeds] == [(0, None), (1, 0)]
    # no --time-budget: two rounds — a first student taught by the teachers' mean, then this one taught by the labels spread
    # over a kNN graph of the first student's own features
    first_saved = yaml.safe_load((out / "student-1" / "config.yaml").read_text())
    assert first_saved["requested"]["teacher"] == f"{out / 'teacher'},{out / 'teacher-2'}"
    assert first_saved["requested"]["method_options"].get("table", "head") == "head"
    assert "graph" not in json.loads((out / "student-1" / "metrics.json").read_text())
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["requested"]["teacher"] == str(out / "student-1") and saved["requested"]["method"] == "pseudolabel"
    assert saved["requested"]["method_options"]["table"] == "graph" and "two rounds" in saved["reasons"]["method"]
    metrics = json.loads((out / "metrics.json").read_text())
    graph = metrics["graph"]
    assert graph["networks"] == 1 and graph["n_labeled"] == 21 and graph["n_pool"] == 90
    route = json.loads((out / "selftrain.json").read_text())
    assert route["plan"]["teachers"] == 2 and route["plan"]["limit"] is None and route["costs"]["forward_ips"] > 0
    assert route["plan"]["rounds"] == 2
    from headstart.api_semi import STEP_FORWARDS

    # teachers label at the pass's speed; a student step (training: never in the graph) is costed at PyTorch's
    assert len(seen) == 1 and route["costs"]["forward_ips"] == pytest.approx(seen[0]["pass_ips"])
    assert route["costs"]["step_s"] == pytest.approx(STEP_FORWARDS * 8 * (1 + 3) / seen[0]["eager_ips"])
    assert route["plan"]["passes"] is None and saved["resolved"]["epochs"] == 2  # --epochs, not the plan's passes
    # the route's guard: the student against its teachers together on the validation images
    from headstart import evaluate
    from headstart.predictor import Predictor
    from headstart.runfolder import rebuild_split

    check = json.loads((out / "metrics.json").read_text())["route"]["validation"]
    assert check["student"]["accuracy"] == pytest.approx(evaluate(str(out), data="val")["accuracy"])
    val, _, _ = rebuild_split(Predictor(out, device="cpu").run, "val", "skip")
    ps = [Predictor(out / t, device="cpu") for t in ("teacher", "teacher-2")]
    together = np.mean([p.proba_tensor(p.images_of(val, num_workers=0)) for p in ps], axis=0)
    truth = np.asarray(val.labels)
    assert check["images"] == len(truth) and check["teachers"]["accuracy"] == pytest.approx(float((together.argmax(1) == truth).mean()))
    z = check["z"]
    assert check["verdict"] == ("below its teachers beyond noise" if z < -2 else "above its teachers beyond noise" if z > 2
                                else "within noise of its teachers")
    mine = Predictor(out, device="cpu")
    right = mine.proba_tensor(mine.images_of(val, num_workers=0)).argmax(1) == truth
    assert (check["student_only_right"], check["teachers_only_right"]) == (int((right & (together.argmax(1) != truth)).sum()),
                                                                         int((~right & (together.argmax(1) == truth)).sum()))
    from headstart.semi.report import pool_section

    tables = [b[1] for b in pool_section(out / "student-1").blocks if b[0] == "table"]
    assert [r["teacher"] for r in tables[2]] == [str(out / "teacher"), str(out / "teacher-2")]  # each teacher alone, in the report
    tables = [b[1] for b in pool_section(out).blocks if b[0] == "table"]
    assert [r["targets"] for r in tables[2]] == ["graph (trained on)", "teacher's head"]  # the spread labels beside the head's
    assert (tables[2][0]["mean_confidence"], tables[2][1]["mean_confidence"]) == (metrics["teacher"]["mean_confidence"],
                                                                                   graph["head"]["mean_confidence"])
    assert [r["model"] for r in tables[3]] == ["student", "teachers"] and tables[3][0]["accuracy"] == check["student"]["accuracy"]
    assert saved["requested"]["method_options"]["view"] == "strong" and saved["requested"]["drop_path_rate"] == 0.2
    assert "self-training" in saved["reasons"]["method"]
    assert json.loads((out / "selftrain.json").read_text())["requested"]["method"] == "auto"
    # the CLI resumes such a run from its request while no student has started
    from headstart.cli import _resume_config

    (out / "config.yaml").unlink()
    cfg = _resume_config(out, set(), {"progress": False})
    assert cfg.method == "auto" and cfg.resume and cfg.unlabeled == str(big_pool)


def test_auto_keeps_supervised_when_the_pool_is_small(shapes_folder, pool_folder, tmp_path):
    res = train(_cfg(shapes_folder, tmp_path / "small", strategy="linear", epochs=2, unlabeled=str(pool_folder)))
    saved = yaml.safe_load((res.run_dir / "config.yaml").read_text())
    assert saved["requested"]["method"] == "supervised" and "too few" in saved["reasons"]["method"]
    assert not (res.run_dir / "teacher").exists()


def test_the_route_costs_a_linear_students_steps_as_a_frozen_bodys(shapes_folder, big_pool, tmp_path, monkeypatch):
    from headstart import api_semi
    from headstart.export import passes

    real, speeds, asked = passes.measure, [], []

    class Planned(Exception):
        pass

    def measure(*a, **kw):
        speeds.append(real(*a, **kw))
        return speeds[-1]

    def plan(left, costs, pool, **kw):
        asked.append(costs.step_s * speeds[-1]["eager_ips"] / (8 * (1 + 3)))  # forward passes per image
        raise Planned

    monkeypatch.setattr(passes, "measure", measure)
    monkeypatch.setattr(api_semi, "plan_route", plan)
    for strategy in ("linear", "partial"):
        with pytest.raises(Planned):
            train(_cfg(shapes_folder, tmp_path / strategy, strategy=strategy, freeze_stages=6 if strategy == "partial" else None, epochs=1,
                       unlabeled=str(big_pool)))
    # the student trains as its first teacher did: a head only is costed as the frozen body it is
    assert asked == [pytest.approx(api_semi.FROZEN_STEP_FORWARDS), pytest.approx(api_semi.STEP_FORWARDS)]


def test_a_frozen_body_students_step_is_costed_without_the_bodys_backward(monkeypatch, tmp_path):
    from headstart.api_semi import FROZEN_STEP_FORWARDS, STEP_FORWARDS, _route_costs
    from headstart.export import passes

    assert FROZEN_STEP_FORWARDS < STEP_FORWARDS
    strategy = {"name": "partial"}
    monkeypatch.setattr(passes, "measure", lambda predictor, x, where: {"pass_ips": 600.0, "eager_ips": 400.0, "export_s": 2.0})
    monkeypatch.setattr("headstart.predictor.Predictor", lambda run, device: None)
    monkeypatch.setattr("headstart.api_semi.read_config",
                        lambda run: {"resolved": {"batch_size": 8, "epochs": 200, "image_size": 16, "strategy": strategy["name"]}})
    data = type("D", (), {"labeled": None, "labeled_idx": list(range(10))})()
    monkeypatch.setattr("headstart.data.tensors.images_tensor", lambda images, size, num_workers: torch.zeros(10, 3, size, size))
    run = tmp_path / "teacher"
    run.mkdir()
    (run / "metrics.json").write_text(json.dumps({"seconds": 9.0, "num_train": 10}))
    trained = _route_costs(run, data, 3, "cpu")
    strategy["name"] = "linear"  # a teacher that trained only its head: so will its student
    frozen = _route_costs(run, data, 3, "cpu")
    assert trained.step_s == pytest.approx(STEP_FORWARDS * 8 * 4 / 400.0)
    assert frozen.step_s == pytest.approx(FROZEN_STEP_FORWARDS * 8 * 4 / 400.0)
    assert (frozen.teacher_s, frozen.forward_ips, frozen.min_steps, frozen.unlabeled_per_step) == (11.0, 600.0, 200 * 2, 24)
    assert (trained.frozen, frozen.frozen) == (False, True)  # a head-only teacher's features are the pretrained body's: no graphs


def test_the_route_plan_fits_teachers_and_pool_to_the_time_left():
    from headstart.api_semi import (BUDGET_MARGIN, GRAPH_S_60K, POOL_ENOUGH, ROUND_MIN_TEACHERS, ROUTE_PASSES, ROUTE_TEACHERS,
                                    RouteCosts, plan_route)

    costs = RouteCosts(teacher_s=100.0, forward_ips=500.0, step_s=0.4, min_steps=400, unlabeled_per_step=48)

    def second(n, passes=1):  # the first student's pass, its graph, the second student
        return n / 500.0 + GRAPH_S_60K * (n / 60_000) ** 2 + max(400, passes * int(np.ceil(n / 48))) * 0.4

    def naive(k, n, passes=1, rounds=1, graphs=True):  # every cost written out: each teacher's graph, the second round
        steps = max(400, passes * int(np.ceil(n / 48)))
        more = (k * GRAPH_S_60K * (n / 60_000) ** 2 if graphs else 0.0) + (second(n, passes) if rounds == 2 else 0.0)
        return (k - 1) * 100.0 + k * n / 500.0 + steps * 0.4 + more

    # -O table=graph: one student, taught by the labels spread over the teachers' graphs (costed), never a second
    for left in (None, 300.0, 1600.0, 1720.0, 2300.0, 5000.0):
        plan = plan_route(left, costs, 60_000, asked=None, table="graph")
        assert plan.graph and plan.rounds == 1 and plan.round_s == 0.0 and "-O table=graph" in plan.why_graph
    assert plan_route(5000.0, costs, 60_000, asked=None, table="graph").passes == 2
    assert plan_route(1600.0, costs, 60_000, asked=None, table="graph").passes is None

    # by default, and with -O table=head, the teachers' mean teaches the first student (no graphs costed), and a second round
    # (a student taught by the labels spread over the first student's features) goes before a second pass, before the teachers past
    # ROUND_MIN_TEACHERS and before the last images of the pool: 1,700 s hold 4 teachers and one student (1,280 s) or 2
    # teachers and two students over all 60,000 images (1,485 s of the 1,530 s), not 3 and two (1,705 s); 2,000 s hold 3
    # teachers and two students, not 4 (1,925 s of 1,800 s); 1,600 s hold two students over all the images with no number of
    # teachers, so 2 teachers and two students over as many as fit (~58,000); 1,200 s the same over ~42,600, where 4
    # teachers and one student would take ~47,600
    head = functools.partial(plan_route, table="head")
    for (left, teachers, rounds, whole), table in itertools.product(
            ((1600.0, 2, 2, False), (1700.0, 2, 2, True), (2000.0, 3, 2, True), (2200.0, 4, 2, True), (5000.0, 4, 2, True),
             (1200.0, 2, 2, False), (700.0, 2, 2, False)), (None, "head")):
        plan = plan_route(left, costs, 60_000, asked=None, table=table)
        avail = BUDGET_MARGIN * left
        n = plan.limit
        assert not plan.graph and "mean probabilities teach the first student" in plan.why_graph
        assert (plan.teachers, plan.rounds, n == 60_000) == (teachers, rounds, whole) and n >= POOL_ENOUGH
        assert plan.passes == 1 and naive(teachers, n, 1, 2, graphs=False) <= avail
        assert plan.round_s == pytest.approx(second(n), abs=0.1)  # what the first student's budget leaves
        if whole:
            assert teachers == ROUTE_TEACHERS or naive(teachers + 1, 60_000, 1, 2, graphs=False) > avail
        else:  # as many images as fit: one more does not, and no number of teachers takes them all
            assert naive(teachers, n + 1, 1, 2, graphs=False) > avail
            assert all(naive(k, 60_000, 1, 2, graphs=False) > avail for k in range(ROUND_MIN_TEACHERS, 5))
            assert "before the last" in plan.why_limit and f"over {n} unlabeled images" in plan.why_limit
    frozen = dataclasses.replace(costs, frozen=True)
    assert head(1200.0, costs, 60_000, asked=None).limit < 44_000 < head(1200.0, frozen, 60_000, asked=None).limit  # 4 teachers, one student
    forced = head(2000.0, costs, 60_000, asked=4)  # --teachers 4 is kept: two students fit beside them over ~55,400 images
    assert (forced.teachers, forced.rounds) == (4, 2)
    assert naive(4, forced.limit, 1, 2, graphs=False) <= 1800.0 < naive(4, forced.limit + 1, 1, 2, graphs=False)
    # a cheap teacher and dear steps: 4 teachers and one student over 20,000 images fit where two students over 20,000 do not
    cheap = RouteCosts(teacher_s=10.0, forward_ips=500.0, step_s=0.4, min_steps=400, unlabeled_per_step=48)
    plan = head(420.0, cheap, 60_000, asked=None)
    assert (plan.teachers, plan.rounds, plan.graph) == (4, 1, False) and plan.limit >= POOL_ENOUGH and "-O table=head" in plan.why_graph
    # where one student fits, by default it learns from the teachers' graphs (costed)
    plan = plan_route(420.0, cheap, 60_000, asked=None)
    assert (plan.teachers, plan.rounds, plan.graph) == (4, 1, True) and "one student fits" in plan.why_graph
    assert plan.limit < head(420.0, cheap, 60_000, asked=None).limit and cheap.seconds(4, 1, 20_000) < 378.0
    assert head(None, costs, 60_000, asked=None).rounds == 2 and plan_route(None, costs, 60_000, asked=None).rounds == 2
    # a pool of 900: two passes of one student (17 s) fit in 90 % of 20 s where two students (18.8 s) do not; in 30 s they do
    tight = RouteCosts(teacher_s=100.0, forward_ips=500.0, step_s=0.4, min_steps=10, unlabeled_per_step=48)
    assert [(head(left, tight, 900, asked=None).rounds, head(left, tight, 900, asked=None).passes) for left in (20.0, 30.0)] == [(1, 2), (2, 1)]
    assert not plan_route(None, costs, 60_000, asked=None).graph and plan_route(300.0, costs, 60_000, asked=None).graph
    # teachers that trained only a head: their features are the frozen pretrained body's — no graphs, and no second round
    # even with -O table=head; the time of the graphs goes to the pool: 1,500 s hold 4 teachers and one student over all
    # 60,000 images (1,280 s)
    for left, table in ((None, "graph"), (1500.0, "graph"), (5000.0, "graph"), (5000.0, "head"), (None, "head")):
        plan = plan_route(left, frozen, 60_000, asked=None, table=table)
        assert (plan.graph, plan.rounds, plan.teachers) == (False, 1, 4) and "frozen" in plan.why_graph
    assert plan_route(1500.0, frozen, 60_000, asked=None).limit == 60_000 and naive(4, 60_000, graphs=False) <= 1350.0
    assert plan_route(1500.0, costs, 60_000, asked=None, table="graph").limit < 60_000  # with the graphs (1,380 s) it does not
    assert frozen.seconds(4, 1, 60_000) == pytest.approx(naive(4, 60_000, graphs=False))

    # no budget: the most teachers, every image; --teachers wins
    assert (plan_route(None, costs, 60_000, asked=None).teachers, plan_route(None, costs, 60_000, asked=None).limit) == (ROUTE_TEACHERS, None)
    assert plan_route(None, costs, 60_000, asked=2).teachers == 2
    for left in (300.0, 700.0, 1200.0, 1700.0, 5000.0):
        plan = plan_route(left, costs, 60_000, asked=None)
        avail = BUDGET_MARGIN * left
        r, g = plan.rounds, plan.graph
        assert naive(plan.teachers, plan.limit, 1, r, g) <= avail + 1e-9
        assert plan.limit == 60_000 or naive(plan.teachers, plan.limit + 1, 1, r, g) > avail
        more = plan.teachers + 1
        if more <= ROUTE_TEACHERS and plan.rounds == 1:  # one more teacher would leave the student too few images
            assert naive(more, POOL_ENOUGH, graphs=g) > avail
        if plan.teachers > 1:
            assert plan.limit >= POOL_ENOUGH
        # a second pass only with every image taken, and only when it fits (and no second round does)
        if plan.rounds == 2:  # one pass each, or the passes nearest the supervised plan's 400 steps
            assert plan.passes == max(1, round(400 / math.ceil(plan.limit / 48)))
        elif plan.passes:
            assert plan.limit == 60_000 and naive(plan.teachers, 60_000, plan.passes, graphs=g) <= avail and plan.passes <= ROUTE_PASSES
        elif plan.limit == 60_000:
            assert naive(plan.teachers, 60_000, 2, graphs=g) > avail
    assert plan_route(None, costs, 60_000, asked=None).passes == ROUTE_PASSES
    assert plan_route(None, costs, 900, asked=None).passes is None  # 2 × 19 steps are fewer than the 400 the student takes anyway
    assert plan_route(5000.0, costs, 60_000, asked=None).teachers == ROUTE_TEACHERS
    assert plan_route(300.0, costs, 60_000, asked=None).teachers == 1
    small = plan_route(1000.0, costs, 900, asked=None)  # a small pool: all of it, and teachers with the time
    assert small.limit == 900 and naive(small.teachers, 900) <= BUDGET_MARGIN * 1000.0
    forced = plan_route(700.0, costs, 60_000, asked=3)
    assert forced.teachers == 3 and naive(3, forced.limit) <= BUDGET_MARGIN * 700.0 < naive(3, forced.limit + 1)
    # 200 s: the margin's share, 400 steps (160 s), the rest labelling at 500 img/s (90 %: 20 s, 10,000 images) — and, where
    # the student learns from the teacher's graph, building it (9,674 images: 19.35 s labelling, 0.65 s the graph)
    assert plan_route(200.0, frozen, 60_000, asked=None).limit == round((BUDGET_MARGIN * 200.0 - 400 * 0.4) * 500.0) > 0
    g = plan_route(200.0, costs, 60_000, asked=None).limit
    assert naive(1, g) <= BUDGET_MARGIN * 200.0 < naive(1, g + 1) and 9_000 < g < 10_000


def test_when_the_supervised_steps_do_not_fit_the_student_makes_one_pass_over_what_does():
    from headstart.api_semi import BUDGET_MARGIN, GRAPH_S_60K, RouteCosts, plan_route

    # 100 labels per class on Fashion-MNIST as measured: a 543-s teacher, 218 img/s, 2.93-s steps, 611 supervised steps
    for costs, left, pool in ((RouteCosts(543.0, 218.0, 2.93, 611, 192), 1254.0, 59_000),
                              (RouteCosts(100.0, 500.0, 0.4, 400, 48), 150.0, 60_000)):
        def naive(n):  # one teacher's pass over n images and its graph, then one step per unlabeled batch, no floor
            return n / costs.forward_ips + GRAPH_S_60K * (n / 60_000) ** 2 + int(np.ceil(n / costs.unlabeled_per_step)) * costs.step_s

        avail = BUDGET_MARGIN * left
        assert costs.min_steps * costs.step_s > avail  # the case: the floor alone does not fit
        plan = plan_route(left, costs, pool, asked=None)
        assert plan.teachers == 1 and plan.passes == 1 and plan.limit > 0
        assert naive(plan.limit) <= avail < naive(plan.limit + 1)
        assert f"supervised plan's {costs.min_steps} student steps do not fit" in plan.why_limit
    # a student of fewer steps than a quarter of the plan's (611 // 4 = 152: 446 s at 2.93 s) is none: the route refuses (limit < 100)
    for left, expected in ((500.0, 0), (700.0, None)):  # 111 and 156 steps at 3.81 s each with their labelling
        plan = plan_route(left, RouteCosts(543.0, 218.0, 2.93, 611, 192), 59_000, asked=None)
        assert (plan.limit == 0) == (expected == 0) and (plan.passes is None) == (expected == 0)


def test_the_plans_passes_are_the_students_epochs(shapes_folder, big_pool, tmp_path, monkeypatch):
    import headstart.api_semi as api_semi

    seen = {}

    def plan(left_s, costs, pool, *, asked=None, trained=1, table=None):
        seen.update(pool=pool, table=table)
        return api_semi.RoutePlan(2, None, "two teachers", "every image", 3, "three passes, planned", graph=True, why_graph="spread, planned")

    monkeypatch.setattr(api_semi, "plan_route", plan)
    out = tmp_path / "passes"
    train(_cfg(shapes_folder, out, strategy="partial", freeze_stages=6, unlabeled=str(big_pool), teachers=1))
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["requested"]["epochs"] == 3 and saved["resolved"]["epochs"] == 3
    assert saved["reasons"]["epochs"] == "three passes, planned" and seen == {"pool": 90, "table": None}
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["history"]) == 3
    assert json.loads((out / "selftrain.json").read_text())["plan"]["passes"] == 3
    # the one student learns from the labels spread over both teachers' graphs, joined, and says so
    assert saved["requested"]["teacher"] == f"{out / 'teacher'},{out / 'teacher-2'}" and not (out / "student-1").exists()
    assert saved["requested"]["method_options"]["table"] == "graph" and saved["reasons"]["table"] == "spread, planned"
    assert metrics["graph"]["networks"] == 2 and len(metrics["teacher"]["members"]) == 2
    assert "the labels spread over the kNN graphs of their features" in saved["reasons"]["method"]
    from headstart.semi.report import pool_section

    tables = [b[1] for b in pool_section(out).blocks if b[0] == "table"]
    assert [r["targets"] for r in tables[3]] == ["graph (trained on)", "the teachers' heads, their mean"]
    assert tables[3][1]["mean_confidence"] == metrics["graph"]["head"]["mean_confidence"]


def test_the_pool_plan_gives_a_network_from_scratch_more_passes():
    from types import SimpleNamespace as NS

    from headstart.api_semi import SCRATCH_POOL_PASSES, pool_epochs

    def job(pretrained, init_from=None, epochs=None):
        return NS(needs=NS(unlabeled_ratio=3), data=NS(train_set=[0] * 100), dist=NS(world_size=1), pool=[0] * 59900,
                  plan=NS(batch_size=16, epochs=60), config=NS(epochs=epochs, init_from=init_from), model=NS(pretrained=pretrained),
                  reasons={}, resolved={})

    pretrained = job(True)
    assert pool_epochs(pretrained) == (1248, 1)  # ceil(59900 / 48) steps draw the pool once; the plan's 420 steps fill one pass
    scratch = job(False)
    assert pool_epochs(scratch) == (1248, SCRATCH_POOL_PASSES) and "from scratch" in scratch.reasons["epochs"]
    assert pool_epochs(job(False, init_from="runs/a"))[1] == 1  # weights from an earlier run are not from scratch
    assert pool_epochs(job(False, epochs=2))[1] == 2  # --epochs decides

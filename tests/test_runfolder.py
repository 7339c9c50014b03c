"""The run folder's API: kinds that the loader dispatches on, registered heads, the resume and
overwrite rules, and the readers."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from headstart import TrainConfig, train
from headstart.errors import HeadstartError, RunError
from headstart.runfolder import HEADS, RUN_KINDS, load_run, open_for_training, read_config, read_splits, rebuild_split

FAST = dict(device="cpu", progress=False, image_size=24)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    out = {}
    for strategy in ("linear", "knn"):
        out[strategy] = train(TrainConfig(data="digits", output=str(root / strategy), strategy=strategy, labels_per_class=5, epochs=2, **FAST)).run_dir
    return out


def test_a_run_records_its_kind_method_and_head_and_loads_by_kind(runs):
    for strategy, head in (("linear", "linear"), ("knn", "knn")):
        meta = json.loads((runs[strategy] / "model.json").read_text())
        assert (meta["kind"], meta["method"], meta["head"]["type"]) == ("classifier", "supervised", head)
        run = load_run(runs[strategy])
        assert run.meta["kind"] == "classifier"
    knn = load_run(runs["knn"]).model.head
    assert knn.k == json.loads((runs["knn"] / "model.json").read_text())["head"]["k"] and knn.bank.shape[0] == 50
    assert set(RUN_KINDS.names()) >= {"classifier"} and HEADS.names() == ["knn", "linear"]


def test_a_run_written_before_kinds_existed_loads_as_a_classifier(runs, tmp_path):
    import shutil

    old = tmp_path / "old"
    shutil.copytree(runs["linear"], old)
    meta = json.loads((old / "model.json").read_text())
    del meta["kind"]
    (old / "model.json").write_text(json.dumps(meta))
    a, b = load_run(old).model.state_dict(), load_run(runs["linear"]).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_an_unknown_kind_or_head_is_refused_naming_what_is_known(runs, tmp_path):
    import shutil

    for key, value, words in (("kind", "detector", "kind 'detector'"), ("head", {"type": "mystery"}, "head type 'mystery'"),
                              ("kind", "segmenter", "not a segmenter run: model.json lacks")):
        folder = tmp_path / f"{key}-{words[:6]}"
        shutil.copytree(runs["linear"], folder)
        meta = json.loads((folder / "model.json").read_text())
        meta[key] = value
        (folder / "model.json").write_text(json.dumps(meta))
        with pytest.raises(RunError, match=words):
            load_run(folder)


def test_opening_for_training_follows_the_resume_and_overwrite_rules(runs, tmp_path):
    with pytest.raises(HeadstartError, match="already holds a finished run.*--overwrite"):
        open_for_training(runs["linear"], resume=False, overwrite=False)
    assert open_for_training(runs["linear"], resume=False, overwrite=True).resume_state is None
    with pytest.raises(RunError, match="nothing to resume"):
        open_for_training(tmp_path / "empty", resume=True, overwrite=False)


def test_readers_give_back_what_training_wrote(runs):
    cfg = read_config(runs["linear"])
    assert cfg["resolved"]["strategy"] == "linear" and cfg["resolved"]["method"] == "supervised"
    assert cfg["resolved"]["method_options"] == {"ema_decay": 0.0}
    splits = read_splits(runs["linear"])
    assert len(splits["labeled_indices"]) == 50 and splits["val_indices"] == []
    run = load_run(runs["linear"])
    train_set, name, caution = rebuild_split(run, "train", "skip")
    assert len(train_set) == 50 and "optimistic" in caution and name == "digits (train split)"
    assert np.array_equal(np.sort(splits["train_indices"]), splits["train_indices"])
    with pytest.raises(HeadstartError, match="no val split"):
        rebuild_split(run, "val", "skip")
    assert read_config(runs["linear"].parent / "nowhere") == {} and read_splits(runs["linear"].parent / "nowhere") == {}

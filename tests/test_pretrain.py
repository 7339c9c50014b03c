"""``headstart pretrain`` end to end on a small folder: the body folder, ``--backbone-from``
loading exactly its weights and refusing another architecture, exact resume after an
interruption, the time budget's plan."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from headstart import TrainConfig, api, train
from headstart.backbones import create_backbone
from headstart.body import BODY, load_body, load_body_into
from headstart.data.fingerprint import file_digest
from headstart.errors import ConfigError, HeadstartError
from headstart.runfolder import load_run

SMALL = dict(backbone="resnet_small", start="scratch", image_size=32, batch_size=16, progress=False, device="cpu")


@pytest.fixture(scope="module")
def body(shapes_folder, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("body") / "rot"
    api.pretrain(str(shapes_folder), method="rotation", output=out, epochs=2, **SMALL)
    return out


def test_the_body_folder_holds_the_stages_and_the_task_head_apart(body, shapes_folder):
    meta = json.loads((body / "model.json").read_text())
    assert meta["kind"] == BODY and meta["backbone"] == "resnet_small" and meta["pretext"]["method"] == "rotation"
    assert meta["weights_sha256"] == file_digest(body / "model.safetensors")
    state = load_file(str(body / "model.safetensors"))
    assert state and all(k.startswith("stages.") for k in state)
    head = load_file(str(body / "pretext-head.safetensors"))
    assert head and not set(head) & set(state)
    metrics = json.loads((body / "metrics.json").read_text())
    assert len(metrics["history"]) == 2 and "val_pretext_acc" in metrics["history"][0]
    assert not (body / "checkpoint").exists()  # a finished body leaves no checkpoint to resume
    # the one run loader reads it; its stages are the file's
    run = load_run(body)
    assert run.kind == BODY
    for k, v in run.model.state_dict().items():
        if k.startswith("stages."):
            torch.testing.assert_close(v, state[k], rtol=0, atol=0)


def test_the_body_learned_something_from_scratch(body):
    # 4-way rotation from scratch: chance is 0.25; two passes over the folder's images beat it
    hist = json.loads((body / "metrics.json").read_text())["history"]
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]


def test_backbone_from_loads_exactly_the_body_weights(body, shapes_folder, tmp_path):
    state = load_file(str(body / "model.safetensors"))
    model = create_backbone("resnet_small", num_classes=3, weights=None)
    info = load_body_into(model, body)
    assert info["weights_sha256"] == file_digest(body / "model.safetensors")
    for k, v in model.state_dict().items():
        if k.startswith("stages."):
            torch.testing.assert_close(v, state[k], rtol=0, atol=0)
    assert model.head.weight.shape[0] == 3  # a head of this run's classes, not the task's
    # and through train: the run records the body, and its first weights are the body's
    out = tmp_path / "run"
    captured = {}
    import headstart.api as api_mod

    real = api_mod._model

    def spy(config, num_classes):
        m = real(config, num_classes)
        captured.update({k: v.clone() for k, v in m.state_dict().items() if k.startswith("stages.")})
        return m

    api_mod._model = spy
    try:
        train(TrainConfig(data=str(shapes_folder), output=str(out), backbone="resnet_small", backbone_from=str(body), strategy="full",
                          epochs=1, batch_size=16, progress=False, device="cpu", image_size=32))
    finally:
        api_mod._model = real
    for k, v in captured.items():
        torch.testing.assert_close(v, state[k], rtol=0, atol=0)
    meta = json.loads((out / "model.json").read_text())
    assert str(body) in meta["weights_source"] and info["weights_sha256"][:12] in meta["weights_source"]


def test_backbone_from_refuses_another_architecture_and_other_runs(body, shapes_folder, tmp_path):
    model = create_backbone("efficientnet_lite0", num_classes=3, weights=None)
    with pytest.raises(ConfigError, match="resnet_small body and this run's --backbone is efficientnet_lite0"):
        load_body_into(model, body)
    with pytest.raises(ConfigError, match="not a finished body"):
        load_body_into(model, tmp_path)
    clf = tmp_path / "clf"
    train(TrainConfig(data=str(shapes_folder), output=str(clf), backbone="resnet_small", strategy="linear", epochs=1, batch_size=16,
                      progress=False, device="cpu", image_size=32))
    with pytest.raises(ConfigError, match="not a body.*--init-from"):
        load_body_into(create_backbone("resnet_small", num_classes=3, weights=None), clf)
    with pytest.raises(ConfigError, match="drop --init-from"):
        train(TrainConfig(data=str(shapes_folder), output=str(tmp_path / "x"), backbone="resnet_small", backbone_from=str(body),
                          init_from=str(clf), progress=False, device="cpu"))


def test_load_body_names_the_baselines(body):
    b = load_body(str(body))
    assert b.image_size == 32 and b.meta["kind"] == BODY
    r = load_body("random:resnet_small")
    assert r.image_size is None and not r.model.pretrained
    with pytest.raises(HeadstartError):
        load_body("imagenet:resnet_small")  # no ImageNet weights are installed for it


def test_an_interrupted_pretraining_resumes_to_the_same_body(shapes_folder, tmp_path, monkeypatch):
    small = {**SMALL, "batch_size": 4}  # 7 steps per pass over the folder's 29 training images
    whole = tmp_path / "whole"
    api.pretrain(str(shapes_folder), method="rotation", output=whole, epochs=2, **small)
    from headstart.methods.pretext import PRETEXTS

    cls = PRETEXTS.get("rotation")
    real_step = cls.step
    calls = {"n": 0}

    def interrupted(self, batch):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return real_step(self, batch)

    part = tmp_path / "part"
    monkeypatch.setattr(cls, "step", interrupted)
    m = api.pretrain(str(shapes_folder), method="rotation", output=part, epochs=2, checkpoint_every=2, **small)
    assert m["interrupted"] and (part / "checkpoint" / "last.pt").is_file()
    monkeypatch.setattr(cls, "step", real_step)
    with pytest.raises(ConfigError, match=r"started with seed 0 \(now 1\)"):
        api.pretrain(str(shapes_folder), method="rotation", output=part, epochs=2, resume=True, **{**small, "seed": 1})
    api.pretrain(str(shapes_folder), method="rotation", output=part, epochs=2, resume=True, **small)
    a, b = load_file(str(whole / "model.safetensors")), load_file(str(part / "model.safetensors"))
    assert set(a) == set(b)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)


def test_the_time_budget_plans_from_a_measured_step(shapes_folder, tmp_path):
    m = api.pretrain(str(shapes_folder), method="rotation", output=tmp_path / "b", time_budget=0.05, **SMALL)
    why = m["reasons"]["epochs"]
    assert "--time-budget" in why and "ms per step measured" in why
    assert m["seconds"]["total"] < 0.05 * 60 + 30


def test_bad_requests_name_the_fix(shapes_folder, tmp_path):
    with pytest.raises(ConfigError, match="not a pretext task"):
        api.pretrain(str(shapes_folder), method="jigsaw", output=tmp_path / "a", **SMALL)
    with pytest.raises(ConfigError, match="neither an image folder nor a built-in set"):
        api.pretrain(str(tmp_path / "missing"), output=tmp_path / "b", **SMALL)
    with pytest.raises(ConfigError, match="--from"):
        api.pretrain(str(shapes_folder), output=tmp_path / "c", **{**SMALL, "start": "imagenet21k"})

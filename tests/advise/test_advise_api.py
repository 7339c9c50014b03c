"""`headstart advise`, `train --strategy auto` and `--search` end to end, on small real data."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from headstart import TrainConfig, train
from headstart.advise import Advice
from headstart.api import advise
from headstart.backbones import BACKBONES
from headstart.cli import app

FAST = dict(image_size=32, device="cpu", progress=False)


@pytest.mark.parametrize("name", BACKBONES.names())
def test_advise_works_for_every_backbone(name):
    a = advise("digits", backbone=name, labels_per_class=3, image_size=64, device="cpu", use_cache=False)
    assert len(a.probe) == len(a.stage_names) and all(0 <= p <= 1 for p in a.probe)
    assert a.size["min_per_class"] == 3 and a.size["total"] == 30
    if a.pretrained:  # installed ImageNet weights: compared with a random-init copy, and BatchNorm read
        assert a.random_probe is not None and a.signals["transfer_gain"] is not None
        assert a.bn_kl is not None and a.signals["bn_kl_mean"] > 0
        assert a.decision["strategy"] == "linear"  # 3 per class is tiny: the body stays frozen
    else:
        assert a.random_probe is None and a.signals["similarity"] is None
        assert a.decision["strategy"] == "full" and "no pretrained weights" in a.reasons["strategy"]


def test_auto_records_the_advice_and_follows_it(tmp_path):
    res = train(TrainConfig(data="digits", output=str(tmp_path / "a"), labels_per_class=10, epochs=2, **FAST))
    run = res.run_dir
    advice = Advice.from_dict({k: v for k, v in json.loads((run / "advice.json").read_text()).items() if not k.startswith("search")})
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["requested"]["strategy"] == "auto" and cfg["requested"]["backbone_lr_mult"] is None
    d = advice.decision
    r = cfg["resolved"]
    assert r["strategy"] == d["strategy"] == "partial"  # 10 per class of 8x8 digits: small and different
    assert (r["freeze_stages"], r["backbone_lr_mult"], r["augment"]) == (d["freeze_stages"], d["backbone_lr_mult"], d["augment"])
    assert r["backbone_lr_mult"] == 1.0
    assert "advice" in cfg["reasons"] and "2×2" in cfg["reasons"]["advice"]
    assert json.loads((run / "model.json").read_text())["strategy"] == "partial"


def test_auto_keeps_what_the_user_set_and_measures_once(tmp_path, capsys):
    first = advise("digits", labels_per_class=10, seed=0, device="cpu", image_size=32)
    res = train(TrainConfig(data="digits", output=str(tmp_path / "b"), labels_per_class=10, epochs=1, freeze_stages=2,
                            backbone_lr_mult=0.5, augment="none", **FAST))
    printed = capsys.readouterr()
    assert "measured earlier" in printed.out + printed.err  # the advice of the first call, from the cache
    r = yaml.safe_load((res.run_dir / "config.yaml").read_text())["resolved"]
    assert (r["strategy"], r["freeze_stages"], r["backbone_lr_mult"], r["augment"]) == (first.decision["strategy"], 2, 0.5, "none")


def test_fixed_strategies_keep_the_old_body_rate(tmp_path):
    res = train(TrainConfig(data="digits", output=str(tmp_path / "c"), strategy="partial", labels_per_class=5, epochs=1, **FAST))
    assert res.resolved["backbone_lr_mult"] == 0.1
    assert not (res.run_dir / "advice.json").exists()


def test_search_tries_the_candidates_and_trains_the_winner(tmp_path):
    res = train(TrainConfig(data="digits", output=str(tmp_path / "s"), labels_per_class=10, epochs=4, search=True, **FAST))
    saved = json.loads((res.run_dir / "advice.json").read_text())
    log = saved["search"]
    assert [row["round"] for row in log] == [0, 0, 0, 1, 1]
    final_round = [row for row in log if row["round"] == 1]
    best = max(final_round, key=lambda row: row["val_accuracy"])
    if final_round[0]["val_accuracy"] == final_round[1]["val_accuracy"]:
        best = final_round[0]
    r = res.resolved
    assert r["strategy"] == best["candidate"]["strategy"]
    assert r["freeze_stages"] == best["candidate"]["freeze_stages"] or r["strategy"] != "partial"
    assert all(row["candidate"] in saved["candidates"] for row in log)
    assert saved["search_winner"] == best["candidate"]  # kept, so a resumed run trains the same winner
    # trial epochs were a quarter and a half of the budget; the winner trained the full 4
    assert len(res.history) == 4


def test_search_needs_auto_and_unknown_strategies_list_auto(tmp_path):
    from headstart.errors import ConfigError

    with pytest.raises(ConfigError, match="--strategy auto"):
        train(TrainConfig(data="digits", output=str(tmp_path / "x"), strategy="linear", search=True, **FAST))
    with pytest.raises(ConfigError, match="auto, linear, partial, full, knn"):
        train(TrainConfig(data="digits", output=str(tmp_path / "y"), strategy="nope", **FAST))
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_cli_advise_table_and_json(tmp_path):
    runner = CliRunner()
    out = runner.invoke(app, ["advise", "digits", "--labels-per-class", "5", "--image-size", "32", "--device", "cpu", "--json",
                              "-o", str(tmp_path / "advice.json")])
    assert out.exit_code == 0, out.output
    d = json.loads(out.stdout)  # progress notes go to stderr
    assert d["decision"]["strategy"] in ("linear", "partial", "full")
    assert json.loads((tmp_path / "advice.json").read_text()) == d
    table = runner.invoke(app, ["advise", "digits", "--labels-per-class", "5", "--image-size", "32", "--device", "cpu"],
                          env={"COLUMNS": "160"})
    assert table.exit_code == 0, table.output
    for words in ("evidence", "stage-wise linear probe", "decision", "conv_head", "similarity", "headstart train digits --strategy auto"):
        assert words in table.output


def test_measuring_leaves_the_random_state_alone():
    """A run must train the same whether its advice was measured now or read from the cache."""
    import torch

    from headstart.advise.cached import advise_labeled
    from headstart.data import few_shot, resolve

    full = resolve("digits", split="train")
    labeled = full.subset(few_shot(full.labels, 3, 0)[0])
    torch.manual_seed(123)
    before = torch.get_rng_state()
    advise_labeled(labeled, native_size=8, backbone="efficientnet_lite0", weights="default", seed=0,
                   device=torch.device("cpu"), image_size=32, num_workers=0, use_cache=False, val_fraction=None)
    assert torch.equal(before, torch.get_rng_state())

"""Noisy Student's round bookkeeping: each student is taught by the run before it, with the
student's noise, in its own folder; the table of rounds is written after every round and a
stopped driver resumes from the first unfinished round."""

from __future__ import annotations

import json

import pytest
import yaml

from headstart.config import TrainConfig
from headstart.errors import ConfigError, RunError
from headstart.semi.selftrain import STUDENT_NOISE, SelftrainPlan, selftrain


def _teacher(tmp_path):
    run = tmp_path / "teacher"
    run.mkdir()
    requested = TrainConfig(data="fashion-mnist", labels_per_class=10, seed=1, output=str(run)).to_dict()
    (run / "config.yaml").write_text(yaml.safe_dump({"requested": requested}))
    (run / "model.json").write_text("{}")
    (run / "metrics.json").write_text(json.dumps({"val": {"accuracy": 0.5}}))
    return run


class _Trainer:
    def __init__(self, fail_at=None):
        self.configs, self.fail_at = [], fail_at

    def __call__(self, cfg: TrainConfig):
        if self.fail_at is not None and len(self.configs) + 1 == self.fail_at:
            raise KeyboardInterrupt
        self.configs.append(cfg)
        from pathlib import Path

        out = Path(cfg.output)
        out.mkdir(parents=True, exist_ok=True)
        (out / "model.json").write_text("{}")
        n = len(self.configs)
        (out / "metrics.json").write_text(json.dumps({
            "val": {"accuracy": 0.5 + 0.1 * n}, "teacher": {"accuracy": 0.7 + 0.01 * n, "mean_confidence": 0.8},
            "history": [{"pool_coverage": 0.9, "pool_mask": 0.8}],
        }))


def _score(run):
    return {"val_acc": json.loads((__import__("pathlib").Path(run) / "metrics.json").read_text())["val"]["accuracy"]}


def test_each_round_is_taught_by_the_one_before_with_the_students_noise(tmp_path):
    teacher = _teacher(tmp_path)
    trainer = _Trainer()
    plan = SelftrainPlan(teacher=str(teacher), unlabeled="pool", rounds=3, output=str(tmp_path / "st"), student="efficientnet_lite1",
                         options={"keep": 0.5}, overrides={"unlabeled_limit": 1000})
    rows = selftrain(plan, trainer, _score)
    assert [r["round"] for r in rows] == [0, 1, 2, 3]
    teachers = [c.teacher for c in trainer.configs]
    assert teachers == [str(teacher), str(tmp_path / "st" / "round-1"), str(tmp_path / "st" / "round-2")]
    for c in trainer.configs:
        assert c.method == "pseudolabel" and c.unlabeled == "pool" and c.unlabeled_limit == 1000
        assert c.backbone == "efficientnet_lite1" and c.drop_path_rate == 0.2
        assert c.method_options == {**STUDENT_NOISE, "keep": "0.5"}
        assert c.data == "fashion-mnist" and c.labels_per_class == 10 and c.seed == 1  # the teacher's recipe
    table = json.loads((tmp_path / "st" / "rounds.json").read_text())["rounds"]
    assert [r["val_acc"] for r in table] == pytest.approx([0.5, 0.6, 0.7, 0.8])
    assert table[2]["teacher"] == str(tmp_path / "st" / "round-1") and table[2]["teacher_pseudo_acc"] == pytest.approx(0.72)
    assert "| 3 |" in (tmp_path / "st" / "rounds.md").read_text()


def test_a_stopped_driver_resumes_at_the_first_unfinished_round(tmp_path):
    teacher = _teacher(tmp_path)
    plan = SelftrainPlan(teacher=str(teacher), unlabeled="pool", rounds=3, output=str(tmp_path / "st"))
    with pytest.raises(KeyboardInterrupt):
        selftrain(plan, _Trainer(fail_at=2), _score)
    assert len(json.loads((tmp_path / "st" / "rounds.json").read_text())["rounds"]) == 2  # the teacher and round 1 are kept
    with pytest.raises(RunError, match="--resume"):
        selftrain(plan, _Trainer(), _score)
    again = _Trainer()
    rows = selftrain(plan, again, _score, resume=True)
    assert [c.output for c in again.configs] == [str(tmp_path / "st" / "round-2"), str(tmp_path / "st" / "round-3")]
    assert [r["round"] for r in rows] == [0, 1, 2, 3]


def test_bad_plans_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="--rounds"):
        selftrain(SelftrainPlan(teacher=str(tmp_path), unlabeled="pool", rounds=0, output=str(tmp_path / "o")), _Trainer(), _score)
    with pytest.raises(RunError, match="not a finished headstart run"):
        selftrain(SelftrainPlan(teacher=str(tmp_path / "nothing"), unlabeled="pool", rounds=1, output=str(tmp_path / "o")),
                  _Trainer(), lambda run: {})

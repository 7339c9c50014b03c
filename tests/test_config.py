"""TrainConfig refuses out-of-range settings in the CLI's words, before any data is read."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from headstart.cli import app
from headstart.config import _RANGES, TrainConfig
from headstart.errors import ConfigError


@pytest.mark.parametrize("name", sorted(_RANGES))
def test_each_bound_is_where_the_table_says(name):
    lo, hi, lo_open, _ = _RANGES[name]
    flag = "--" + name.replace("_", "-")
    ok = [lo + 0.5 if hi is not None and hi - lo <= 1 else lo + 1] + ([] if lo_open else [lo])
    bad = [lo - 1] + ([lo] if lo_open else []) + ([hi, hi + 1] if hi is not None else [])
    integer = isinstance(TrainConfig.__dataclass_fields__[name].default, int) or name in (
        "labels_per_class", "freeze_stages", "image_size", "epochs", "batch_size", "knn_k", "max_image_pixels",
    )
    for v in ok:
        TrainConfig(data="digits", **{name: int(v) if integer and float(v).is_integer() else v})
    for v in bad:
        with pytest.raises(ConfigError) as info:
            TrainConfig(data="digits", **{name: v})
        assert str(info.value).startswith(f"{flag} must be ")


def test_labels_per_class_zero_is_refused_with_the_fix():
    with pytest.raises(ConfigError) as info:
        TrainConfig(data="digits", labels_per_class=0)
    assert str(info.value) == (
        "--labels-per-class must be above 0, got 0; leave it out to train on every labeled image"
    )
    assert TrainConfig(data="digits", labels_per_class=None).labels_per_class is None


def test_with_updates_and_yaml_go_through_the_same_check():
    cfg = TrainConfig(data="digits")
    with pytest.raises(ConfigError, match="--val-fraction must be at least 0 and below 1"):
        cfg.with_updates(val_fraction=1.0)
    with pytest.raises(ConfigError, match="--epochs"):
        TrainConfig.from_dict({"data": "digits", "epochs": 0})


def test_the_cli_says_it_without_a_traceback(tmp_path):
    from headstart.errors import HeadstartError

    with pytest.raises(HeadstartError, match="--labels-per-class must be above 0, got 0"):
        CliRunner().invoke(app, ["train", "digits", "-o", str(tmp_path / "r"), "--labels-per-class", "0"], catch_exceptions=False)
    assert not (tmp_path / "r").exists()  # refused before anything was written
    res = CliRunner().invoke(app, ["predict", str(tmp_path), "x.png", "--max-image-pixels", "0"])
    assert res.exit_code == 2 and "--max-image-pixels" in res.output

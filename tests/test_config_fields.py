"""TrainConfig's fields are the one source of every knob: a default and a one-line help each."""

from __future__ import annotations

import dataclasses

import pytest

from headstart.config import TrainConfig
from headstart.errors import ConfigError

FIELDS = dataclasses.fields(TrainConfig)


@pytest.mark.parametrize("f", FIELDS, ids=lambda f: f.name)
def test_every_field_has_a_one_line_help(f):
    text = f.metadata.get("help")
    assert isinstance(text, str) and text.strip(), f"{f.name} has no metadata['help']"
    assert "\n" not in text, f"{f.name}: the help is one line"


def test_every_field_but_data_has_a_default():
    missing = [f.name for f in FIELDS if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    assert missing == ["data"]


def test_the_docstring_points_to_the_metadata_instead_of_repeating_it():
    assert "Attributes" not in (TrainConfig.__doc__ or "")
    assert "metadata" in TrainConfig.__doc__


def test_method_and_its_options_come_right_after_strategy():
    names = [f.name for f in FIELDS]
    at = names.index("strategy")
    assert names[at + 1 : at + 3] == ["method", "method_options"]
    cfg = TrainConfig(data="digits")
    assert cfg.method == "auto" and cfg.method_options is None  # supervised, or self-training with --unlabeled


def test_method_options_round_trip_and_must_be_a_mapping():
    cfg = TrainConfig(data="digits", method="supervised", method_options={"threshold": "0.95"})
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="method_options must be a mapping"):
        TrainConfig(data="digits", method_options=["threshold=0.95"])


def test_cli_metadata_names_only_known_spellings():
    known = {"help", "flags", "negation", "cli"}
    for f in FIELDS:
        assert set(f.metadata) <= known, f"{f.name}: unknown metadata {set(f.metadata) - known}"
        if "negation" in f.metadata:
            assert f.type == "bool" and f.default is True and f.metadata["negation"].startswith("--no-")

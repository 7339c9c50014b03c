"""`headstart train`'s options are built from TrainConfig's fields, and only from them: same
defaults, same help; `-O key=value` method options; `headstart list`; the imports of cli.py.

No test here trains: ``headstart.api.train`` is replaced by a fake that keeps the config."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import typing
from pathlib import Path
from types import SimpleNamespace

import pytest
import typer
from typer.testing import CliRunner

from headstart import api, cli
from headstart.cli import app
from headstart.config import TrainConfig, dump_yaml
from headstart.errors import HeadstartError
from headstart.index import METHODS, option_help

runner = CliRunner()

FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
# Fields the train command spells its own way: DATA is the argument, --resume takes the run folder.
SPECIAL = {"data", "resume"}
CLI_ONLY = {"ctx", "config", "resume", "devices"}


def _click_train():
    return typer.main.get_command(app).commands["train"]


@pytest.fixture
def captured(monkeypatch):
    """The TrainConfig each ``train`` command hands to the API (nothing trains)."""
    configs: list[TrainConfig] = []

    def fake_train(cfg):
        configs.append(cfg)
        return SimpleNamespace(history=[], val_accuracy=None, interrupted=False, best_epoch=None, seconds=0.0, run_dir="x")

    monkeypatch.setattr(api, "train", fake_train)
    return configs


def invoke(*args: str):
    try:
        res = runner.invoke(app, list(args), catch_exceptions=False)
    except HeadstartError as exc:
        return 2, str(exc)
    return res.exit_code, res.output


def test_every_field_is_an_option_with_the_fields_default_and_help():
    params = inspect.signature(cli.train).parameters
    for name, f in FIELDS.items():
        if name in SPECIAL:
            continue
        assert name in params, f"TrainConfig.{name} is not a train option"
        option = params[name].default
        assert isinstance(option, typer.models.OptionInfo), name
        assert option.default == f.default, f"--{name}: CLI default {option.default!r}, field default {f.default!r}"
        assert option.help and option.help.startswith(f.metadata["help"]), name
    assert set(params) - set(FIELDS) == CLI_ONLY - {"resume"}  # nothing else is written by hand
    assert isinstance(params["data"].default, typer.models.ArgumentInfo)
    hints = typing.get_type_hints(cli.train)  # typer reads these too: the same concrete types
    assert all(hints[name] == p.annotation for name, p in params.items())


def test_the_built_click_command_has_the_same_defaults_and_help():
    by_name = {p.name: p for p in _click_train().params}
    for name, f in FIELDS.items():
        if name in SPECIAL:
            continue
        p = by_name[name]
        assert p.default == f.default, name
        assert p.help and f.metadata["help"] in p.help, name
        flags = list(f.metadata.get("flags", ("--" + name.replace("_", "-"),)))
        assert set(flags) <= set(p.opts), (name, p.opts)
        if "negation" in f.metadata:
            assert p.secondary_opts == [f.metadata["negation"]], name


def test_help_page_lists_every_flag_of_today():
    code, text = invoke("train", "--help")
    assert code == 0
    flags = ["--output", "-o", "--strategy", "--method", "--option", "-O", "--backbone", "--weights", "--freeze-stages",
             "--warmup-epochs", "--labels-per-class", "--val", "--val-fraction", "--unlabeled", "--image-size", "--epochs",
             "--batch-size", "--lr", "--backbone-lr-mult", "--stage-lr-decay", "--weight-decay", "--label-smoothing",
             "--drop-rate", "--augment", "--augment-strength", "--invariances", "--cutmix", "--mixup", "--knn-k", "--seed",
             "--on-bad-image", "--device", "--max-image-pixels", "--num-workers", "--config", "--no-progress", "--overwrite",
             "--feature-cache", "--no-feature-cache", "--checkpoint-every", "--resume", "--search", "--devices"]
    for flag in flags:
        assert f" {flag} " in text, flag
    assert "--no-overwrite" not in text and "--no-search" not in text  # one-way switches stay one-way


def test_no_flags_give_the_configs_own_defaults(captured):
    code, text = invoke("train", "digits")
    assert code == 0, text
    assert captured == [TrainConfig(data="digits")]


def test_flags_reach_their_fields(captured):
    code, text = invoke(
        "train", "digits", "-o", "runs/x", "--strategy", "linear", "--lr", "0.01", "--epochs", "3", "--augment", "crop:0.6,hflip",
        "--invariances", "hflip;3=hflip", "--no-progress", "--no-feature-cache", "--overwrite", "--search", "--method", "supervised",
        "--max-image-pixels", "1000000",
    )
    assert code == 0, text
    cfg = captured[-1]
    assert (cfg.output, cfg.strategy, cfg.lr, cfg.epochs, cfg.augment, cfg.invariances) == (
        "runs/x", "linear", 0.01, 3, "crop:0.6,hflip", "hflip;3=hflip"
    )
    assert cfg.progress is False and cfg.feature_cache is False and cfg.overwrite and cfg.search
    assert cfg.method == "supervised" and cfg.max_image_pixels == 1000000 and cfg.resume is False


def test_method_options_are_a_dict_of_strings(captured):
    code, text = invoke("train", "digits", "-O", "a=1", "--option", "b=x", "-O", "c=p=q")
    assert code == 0, text
    assert captured[-1].method_options == {"a": "1", "b": "x", "c": "p=q"}


@pytest.mark.parametrize("item", ["threshold", "=0.9"])
def test_a_malformed_option_names_the_expected_form(captured, item):
    res = runner.invoke(app, ["train", "digits", "-O", item])
    assert res.exit_code == 2 and "KEY=VALUE" in res.output and "--option" in res.output
    assert captured == []


def test_a_config_file_sets_method_options_and_flags_win(captured, tmp_path):
    dump_yaml(tmp_path / "c.yaml", {"method_options": {"threshold": 0.9}, "seed": 3, "lr": 0.5})
    code, text = invoke("train", "digits", "--config", str(tmp_path / "c.yaml"), "--lr", "0.1")
    assert code == 0, text
    cfg = captured[-1]
    assert cfg.method_options == {"threshold": 0.9} and cfg.seed == 3 and cfg.lr == 0.1
    code, text = invoke("train", "digits", "--config", str(tmp_path / "c.yaml"), "-O", "threshold=0.5")
    assert captured[-1].method_options == {"threshold": "0.5"}


def test_data_is_needed_unless_resuming(captured):
    code, text = invoke("train")
    assert code == 2 and "--resume RUN" in text and captured == []


def _saved_run(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    requested = {**TrainConfig(data=str(tmp_path / "data"), output=str(run), epochs=40, method_options={"a": "1"}).to_dict()}
    dump_yaml(run / "config.yaml", {"requested": requested})
    return run


def test_resume_takes_the_saved_config_with_device_and_progress_from_the_command_line(captured, tmp_path):
    run = _saved_run(tmp_path)
    code, text = invoke("train", "--resume", str(run), "--device", "cpu", "--no-progress", "--epochs", "40", "-O", "a=1")
    assert code == 0, text
    cfg = captured[-1]
    assert cfg.resume and cfg.overwrite and cfg.output == str(run) and cfg.epochs == 40
    assert cfg.device == "cpu" and cfg.progress is False and cfg.method_options == {"a": "1"}


@pytest.mark.parametrize(("flags", "named"), [
    (("--lr", "0.1"), "--lr 0.1 here, None in the run"),
    (("--epochs", "5"), "--epochs 5 here, 40 in the run"),
    (("-O", "a=2"), "--option {'a': '2'} here"),
    (("--method", "other"), "--method 'other' here"),
])
def test_resume_refuses_a_differing_flag_and_names_it(captured, tmp_path, flags, named):
    run = _saved_run(tmp_path)
    code, text = invoke("train", "--resume", str(run), *flags)
    assert code == 2 and named in text, text
    assert captured == []


def test_resume_of_a_folder_that_is_no_run_is_refused(captured, tmp_path):
    code, text = invoke("train", "--resume", str(tmp_path))
    assert code == 2 and "not a run folder" in text


@pytest.fixture
def toy_methods():
    """Two methods registered for one test: one with options, one without."""

    @dataclasses.dataclass(frozen=True)
    class ToyOptions:
        threshold: float = dataclasses.field(default=0.95, metadata={"help": "confidence a pseudo-label needs"})
        ratio: int = dataclasses.field(default=7, metadata={"help": "unlabeled images per labeled one"})

    @dataclasses.dataclass(frozen=True)
    class Nothing:
        pass

    class Toy:
        """A toy method for the listing test.

        More lines that the listing leaves out.
        """

        Options = ToyOptions

    class Bare:
        """A toy method without options."""

        Options = Nothing

    METHODS._entries.update({"toy-listing": Toy, "bare-listing": Bare})
    yield
    del METHODS._entries["toy-listing"], METHODS._entries["bare-listing"]


def test_list_methods_prints_each_method_its_line_and_options(toy_methods):
    res = runner.invoke(app, ["list", "methods"], env={"COLUMNS": "300"})
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "supervised" in text and "Cross-entropy on the labels" in text
    for option, default, _ in option_help(METHODS.get("supervised").Options):
        assert option in text and repr(default) in text, option
    assert "toy-listing" in text and "A toy method for the listing test." in text and "More lines" not in text
    for word in ("threshold", "0.95", "confidence a pseudo-label needs", "ratio", "7", "unlabeled images per labeled one"):
        assert word in text, word
    assert "bare-listing" in text and "A toy method without options." in text and "no options" in text


def test_list_strategies_and_backbones():
    res = runner.invoke(app, ["list", "strategies"], env={"COLUMNS": "250"})
    assert res.exit_code == 0 and all(s in res.output for s in ("auto", "linear", "partial", "full", "knn"))
    res = runner.invoke(app, ["list", "backbones"], env={"COLUMNS": "250"})
    assert res.exit_code == 0 and "efficientnet_lite0" in res.output and "resnet18" in res.output


ALLOWED = {"api", "api_explain", "config", "index"}


def test_cli_imports_only_the_api_the_config_and_the_registry_index():
    """cli.py may import the package only through ``api``/``api_explain``, ``config`` and ``index``."""
    tree = ast.parse(Path(cli.__file__).read_text())
    seen = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").split(".")[0] == "headstart"):
            module = (node.module or "").removeprefix("headstart").lstrip(".")
            targets = [module] if module else [a.name for a in node.names]
            seen.update(targets)
            assert set(targets) <= ALLOWED, f"line {node.lineno}: cli.py imports {targets}"
        elif isinstance(node, ast.Import):
            for a in node.names:
                assert not a.name.startswith("headstart"), f"line {node.lineno}: cli.py imports {a.name}"
    assert {"api", "config", "index"} <= seen


def test_resume_compares_each_of_several_teachers_as_a_path(tmp_path, monkeypatch):
    from headstart.cli import _same_value

    monkeypatch.chdir(tmp_path)
    a, b = tmp_path / "a", tmp_path / "b"
    assert _same_value("teacher", "a,b", f"{a},{b}")  # relative and absolute name the same runs
    assert not _same_value("teacher", "b,a", f"{a},{b}")  # another order is another mean's rounding: not the same run
    assert not _same_value("teacher", "a", f"{a},{b}")
    assert _same_value("output", "a", str(a)) and not _same_value("output", "a,b", f"{a},{b}")  # only --teacher is a list

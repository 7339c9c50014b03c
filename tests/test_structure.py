"""The import direction the design promises, checked on the source: each rule here fails when a
module reaches across it."""

from __future__ import annotations

import ast
from pathlib import Path

import headstart

SRC = Path(headstart.__file__).parent


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module imported, names) for every import inside the package, as absolute dotted names."""
    rel = path.relative_to(SRC.parent).with_suffix("")
    package = list(rel.parts[:-1]) if rel.name != "__init__" else list(rel.parts[:-1])
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.startswith("headstart"):
                out.append((mod, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names if a.name.startswith("headstart")]
    return out


def _modules():
    return [p for p in SRC.rglob("*.py") if "__pycache__" not in p.parts]


def _name(path: Path) -> str:
    return ".".join(path.relative_to(SRC.parent).with_suffix("").parts)


def test_the_cli_imports_only_the_api_the_config_and_the_registry_index():
    allowed = {"headstart.api", "headstart.api_explain", "headstart.config", "headstart.index"}
    used = set()
    for mod, names in _imports(SRC / "cli.py"):
        used |= {f"{mod}.{n}" for n in names} if mod == "headstart" else {mod}  # `from . import api, api_explain`
    assert used and used <= allowed, sorted(used - allowed)


def test_no_module_imports_the_package_root():
    for path in _modules():
        if path.name == "__init__.py" and path.parent == SRC:
            continue
        for mod, names in _imports(path):
            assert not (mod == "headstart" and not set(names) <= {"api", "api_explain"}), f"{_name(path)} imports {names} from the package root"


def test_the_explain_api_uses_no_private_name_of_the_api():
    for mod, names in _imports(SRC / "api_explain.py"):
        if mod == "headstart.api":
            assert not [n for n in names if n.startswith("_")], names


def test_the_engine_knows_only_the_method_protocol():
    for path in (SRC / "engine").glob("*.py"):
        for mod, _ in _imports(path):
            if mod.startswith("headstart.methods"):
                assert mod == "headstart.methods.base", f"{_name(path)} imports {mod}: the loop must not know a method"
            assert not mod.startswith(("headstart.api", "headstart.finetune", "headstart.advise", "headstart.runfolder")), (
                f"{_name(path)} imports {mod}"
            )


def test_leaves_do_not_import_the_stages_built_on_them():
    above = ("headstart.engine", "headstart.api", "headstart.finetune", "headstart.advise", "headstart.methods", "headstart.runfolder",
             "headstart.predictor", "headstart.explain")
    for leaf in ("data", "augment", "backbones", "report", "ensemble"):
        for path in (SRC / leaf).rglob("*.py"):
            for mod, _ in _imports(path):
                assert not mod.startswith(above), f"{_name(path)} (a leaf) imports {mod}"


def test_one_console_for_every_message_and_bar():
    makers = [_name(p) for p in _modules() if "Console(" in p.read_text()]
    assert makers == ["headstart.console"], makers


def test_a_quiet_console_silences_every_progress_bar(monkeypatch):
    from headstart.console import console
    from headstart.data._progress import map_with_progress
    from headstart.engine.progress import EpochProgress

    monkeypatch.setattr(type(console), "is_terminal", property(lambda self: True))
    with EpochProgress("x", 3) as bar:
        assert bar.active
    monkeypatch.setattr(console, "quiet", True)
    with EpochProgress("x", 3) as bar:
        assert not bar.active
    with console.capture() as captured:
        assert map_with_progress(lambda v: v * 2, list(range(500)), description="decoding") == [v * 2 for v in range(500)]
    assert captured.get() == ""

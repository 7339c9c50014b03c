"""The shape of the code the method seam reshaped: lines, longest functions, reads of
``config.strategy`` and what ``cli.py`` imports. ``python -m benchmarks.code_shape [--json]``.

Rerun it at any commit (``git stash``/``git worktree``) to compare; the figures before and after
the seam are recorded in ``benchmarks/results/code-shape.md``.
"""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "headstart"
FILES = ("api.py", "engine/loop.py", "cli.py")


def functions(tree: ast.AST) -> list[tuple[str, int]]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            out.append((node.name, node.end_lineno - node.lineno + 1))
    return sorted(out, key=lambda t: -t[1])


def strategy_reads(tree: ast.AST) -> int:
    """Attribute reads ``<something>.strategy`` where something is named ``config``/``cfg``."""
    n = 0
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr == "strategy" and isinstance(node.value, ast.Name):
            if node.value.id in ("config", "cfg", "trial"):
                n += 1
    return n


def package_imports(tree: ast.AST) -> list[str]:
    mods = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            mods.add("." * node.level + (node.module or ""))
    return sorted(mods)


def shape(src: Path = SRC) -> dict:
    out = {}
    for rel in FILES:
        path = src / rel
        if not path.is_file():
            continue
        text = path.read_text()
        tree = ast.parse(text)
        out[rel] = {
            "lines": len(text.splitlines()),
            "longest_functions": functions(tree)[:3],
            "config_strategy_reads": strategy_reads(tree),
            "package_imports": package_imports(tree),
        }
    return out


def main(argv: list[str]) -> None:
    src = Path(argv[argv.index("--src") + 1]) if "--src" in argv else SRC
    result = shape(src)
    if "--json" in argv:
        print(json.dumps(result, indent=2))
        return
    for rel, d in result.items():
        longest = ", ".join(f"{n} {k}" for n, k in d["longest_functions"])
        print(f"{rel}: {d['lines']} lines; longest functions: {longest}; config.strategy reads: {d['config_strategy_reads']}")
        print(f"  imports from the package: {', '.join(d['package_imports'])}")


if __name__ == "__main__":
    main(sys.argv[1:])

"""Where things live (issue 16): methods/ holds registered methods only, composing the supermask
library; no module is over 700 lines; methods import neither the CLI, the store nor the report,
and no method skips a constructor."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
METHODS = sorted(p for p in (ROOT / "methods").glob("*.py") if p.name != "__init__.py")
FORBIDDEN = ("clbench.cli", "clbench.store", "clbench.report", "clbench.runner")


def imported(tree: ast.AST) -> set[str]:
    """Every module a file imports, at top level or inside functions."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_every_method_file_registers_a_method():
    from clbench import registry

    modules = {cls.__module__ for cls in registry.methods().values() if isinstance(cls, type)}
    for path in METHODS:
        assert f"clbench.methods.{path.stem}" in modules, f"{path.name} registers no method"
        assert "@register_method" in path.read_text(), path.name


def test_methods_import_no_cli_store_or_report_and_call_their_constructors():
    for path in METHODS:
        text = path.read_text()
        tree = ast.parse(text)
        bad = {m for m in imported(tree) if m.startswith(FORBIDDEN)}
        assert not bad, f"{path.name} imports {bad}"
        assert ".__init__(self" not in text, f"{path.name} calls a constructor by hand"


def test_no_module_is_over_700_lines():
    folders = ("clbench", "methods", "scenarios", "tests", "benchmarks")
    for path in (p for folder in folders for p in (ROOT / folder).rglob("*.py")):
        lines = len(path.read_text().splitlines())
        assert lines <= 700, f"{path.relative_to(ROOT)} has {lines} lines"

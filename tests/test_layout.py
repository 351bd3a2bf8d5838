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


def module_name(path: Path) -> str:
    """The import name of a source file (methods/ and scenarios/ install under clbench)."""
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[0] in ("methods", "scenarios"):
        parts.insert(0, "clbench")
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def runtime_imports(tree: ast.AST) -> set[str]:
    """Modules imported at run time, top level or lazily, leaving out ``if TYPE_CHECKING:``."""
    checking = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                and "TYPE_CHECKING" in ast.unparse(node.test) for n in ast.walk(node)}
    names: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in checking:
            continue
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}  # from pkg import module
    return names


def test_no_import_cycle_top_level_or_lazy():
    folders = ("clbench", "methods", "scenarios")
    files = [p for folder in folders for p in (ROOT / folder).rglob("*.py")]
    modules = {module_name(p): p for p in files}
    graph = {name: {m for m in runtime_imports(ast.parse(path.read_text())) if m in modules
                    and m != name and not name.startswith(m + ".")}
             for name, path in modules.items()}
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = trail[trail.index(nxt):] + [nxt] if nxt in trail else [node, nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])

"""One registry of methods and benchmark families, filled by decorators.

Built-ins and installed packages are found through the entry-point groups ``clbench.methods``
and ``clbench.benchmarks`` (each entry names a module whose import registers its classes);
``--plugin file.py`` loads a file the same way. A module that fails to import is kept with its
error: listing shows it as broken, selecting it raises the error in one line, and nothing else
is affected. Loading needs no torch or Avalanche import.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import TypeVar

from clbench.errors import ClbenchError, unknown

METHOD_GROUP = "clbench.methods"
BENCHMARK_GROUP = "clbench.benchmarks"

T = TypeVar("T", bound=type)


@dataclass(frozen=True)
class Broken:
    """A plugin that failed to load: where it came from and why."""

    name: str
    source: str
    error: str


_registries: dict[str, dict[str, type | Broken]] = {METHOD_GROUP: {}, BENCHMARK_GROUP: {}}
_loaded_groups: set[str] = set()
_plugin_files: dict[str, str] = {}  # path -> sha256
_broken_files: list[Broken] = []
_loading_source: list[str] = []


def normalise(name: str) -> str:
    """Registry names are lower case with dashes: ``Upper_Bound`` → ``upper-bound``."""
    return name.strip().lower().replace("_", "-")


def _register(group: str, cls: T) -> T:
    name = normalise(cls.name)
    if not name:
        raise TypeError(f"{cls.__qualname__} declares no name")
    table = _registries[group]
    existing = table.get(name)
    if existing is not None and existing is not cls and not isinstance(existing, Broken):
        raise ClbenchError(
            f"two {group.split('.')[-1]} are named '{name}' ({existing.source} and "
            f"{_loading_source[-1] if _loading_source else cls.__module__}): rename one"
        )
    cls.name = name
    cls.source = _loading_source[-1] if _loading_source else f"module {cls.__module__}"
    table[name] = cls
    return cls


def register_method(cls: T) -> T:
    """Class decorator: make a :class:`clbench.method.Method` selectable by its ``name``."""
    return _register(METHOD_GROUP, cls)


def register_benchmark(cls: T) -> T:
    """Class decorator: make a :class:`clbench.benchmark.Benchmark` selectable by its name."""
    return _register(BENCHMARK_GROUP, cls)


def _load_group(group: str) -> None:
    if group in _loaded_groups:
        return
    _loaded_groups.add(group)
    for ep in sorted(entry_points(group=group), key=lambda e: e.name):
        dist = ep.dist.name if ep.dist is not None else "?"
        source = "built-in" if ep.value.startswith("clbench.") else f"package {dist}"
        _loading_source.append(source)
        try:
            ep.load()
            _claim(group, ep.module, source)
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - a broken plugin must not
            _mark_broken(group, ep.name, source, exc)  # break the CLI
        finally:
            _loading_source.pop()


def _claim(group: str, module: str, source: str) -> None:
    """Give an entry point's source to what its module registered when it was imported
    directly (``import clbench.methods.exssnet``) before the group was loaded."""
    for cls in _registries[group].values():
        if not isinstance(cls, Broken) and cls.source == f"module {module}":
            cls.source = source


def _mark_broken(group: str, name: str, source: str, exc: BaseException) -> Broken:
    """Keep a plugin that failed to load, under its name (suffixed if a working entry has it)."""
    key = normalise(name)
    table = _registries[group]
    if key in table and not isinstance(table[key], Broken):
        key = f"{key}:broken"
    entry = Broken(key, source, _one_line(exc))
    table.setdefault(key, entry)
    return entry


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def load_plugin_file(path: str | Path) -> str:
    """Import a plugin file (its decorators register what it defines); return its sha256.

    Installed entry points load first, so a name clash marks the file as broken, not them. A
    file that fails to import is kept as a broken method under its stem.
    """
    _load_group(METHOD_GROUP)
    _load_group(BENCHMARK_GROUP)
    file = Path(path).expanduser().resolve()
    if not file.is_file():
        raise ClbenchError(f"--plugin {path}: no such file")
    key = str(file)
    if key in _plugin_files:
        return _plugin_files[key]
    digest = hashlib.sha256(file.read_bytes()).hexdigest()
    _plugin_files[key] = digest
    module_name = f"clbench_plugin_{digest[:12]}"
    spec = importlib.util.spec_from_file_location(module_name, file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    _loading_source.append(f"plugin {file}")
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:  # noqa: BLE001
        _broken_files.append(_mark_broken(METHOD_GROUP, file.stem, f"plugin {file}", exc))
    finally:
        _loading_source.pop()
    return digest


def plugin_files() -> dict[str, str]:
    """Plugin files loaded in this process, with their sha256."""
    return dict(_plugin_files)


def methods() -> dict[str, type | Broken]:
    """All methods by name (broken plugins included), sorted."""
    _load_group(METHOD_GROUP)
    return dict(sorted(_registries[METHOD_GROUP].items()))


def benchmarks() -> dict[str, type | Broken]:
    """All benchmark families by name (broken plugins included), sorted."""
    _load_group(BENCHMARK_GROUP)
    return dict(sorted(_registries[BENCHMARK_GROUP].items()))


def _get(table: dict[str, type | Broken], kind: str, name: str) -> type:
    entry = table.get(normalise(name))
    if entry is None:
        choices = [k for k, v in table.items() if not isinstance(v, Broken)]
        broken = "".join(f"; {b.source} failed to load: {b.error}" for b in _broken_files)
        raise unknown(kind, name, choices, f" (clbench list){broken}")
    if isinstance(entry, Broken):
        raise ClbenchError(f"{kind} '{entry.name}' ({entry.source}) failed to load: {entry.error}")
    return entry


def get_method(name: str) -> type:
    """The method class registered as ``name``; a one-line error when unknown or broken."""
    return _get(methods(), "method", name)


def get_benchmark(name: str) -> type:
    """The benchmark family registered as ``name``; a one-line error when unknown or broken."""
    return _get(benchmarks(), "benchmark", name)

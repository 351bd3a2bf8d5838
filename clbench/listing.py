"""Text for ``clbench list``: the vocabulary, methods with their declarations, broken plugins."""

from __future__ import annotations

from clbench import registry
from clbench.data import SOURCES
from clbench.models import MODELS
from clbench.params import format_value
from clbench.scenarios.taxonomy import SCENARIOS


def render(kinds: list[str], verbose: bool) -> str:
    parts = [SECTIONS[kind](verbose) for kind in kinds]
    return "\n\n".join(parts)


def _methods(verbose: bool) -> str:
    lines = ["methods:"]
    for name, cls in registry.methods().items():
        if isinstance(cls, registry.Broken):
            lines.append(f"  {name:<22} BROKEN ({cls.source}): {cls.error}")
            continue
        lines.append(f"  {name:<22} [{','.join(sorted(cls.scenarios))}] {cls.description}")
        if not verbose:
            continue
        lines.append(f"      source: {cls.source}; models: {', '.join(cls.models)}; "
                     f"density: {'yes' if cls.uses_density else 'no'}; "
                     f"infers task: {'yes' if cls.infers_task else 'no'}")
        for param in cls.params:
            lines.append(f"      --param {param.describe()}")
        for preset in cls.presets:
            when = " ".join(f"{k}={v}" for k, v in preset.when.items()) or "always"
            sets = [f"--{k.replace('_', '-')} {format_value(v)}"
                    for k, v in preset.options.items() if v is not None]
            sets += [f"{k}={format_value(v)}" for k, v in preset.params.items()]
            note = f"  ({preset.note})" if preset.note else ""
            lines.append(f"      default when {when}: {' '.join(sets)}{note}")
        for encoding, rule in cls.bytes_rules.items():
            lines.append(f"      bytes {encoding}: {rule}")
    return "\n".join(lines)


def _scenarios(verbose: bool) -> str:
    lines = ["scenarios:"]
    for s in SCENARIOS.values():
        lines.append(f"  {s.name:<5} {s.describe()}")
    return "\n".join(lines)


def _benchmarks(verbose: bool) -> str:
    lines = ["benchmarks:"]
    for name, cls in registry.benchmarks().items():
        if isinstance(cls, registry.Broken):
            lines.append(f"  {name:<10} BROKEN ({cls.source}): {cls.error}")
        else:
            lines.append(f"  {name:<10} {cls.description}")
    return "\n".join(lines)


def _datasets(verbose: bool) -> str:
    lines = ["datasets:"]
    for name, info in SOURCES.items():
        shape = "x".join(map(str, info.input_shape))
        where = "embedded" if info.embedded else "data root"
        lines.append(f"  {name:<14} {info.classes:>4} classes, {shape:<9} {where:<9} "
                     f"{info.description}")
    return "\n".join(lines)


def _models(verbose: bool) -> str:
    return "\n".join(["models:"] + [f"  {k:<12} {v}" for k, v in MODELS.items()])


SECTIONS = {"methods": _methods, "scenarios": _scenarios, "benchmarks": _benchmarks,
            "datasets": _datasets, "models": _models}

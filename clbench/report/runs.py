"""Records (read by ``clbench.results``) into runs and groups of seeds, and their names.

A run is one record and one of its variants; a group holds the runs whose configs differ only
in their seeds (``RunConfig.group_key``) and shares their variant. Runs of one config whose
records name different streams for one data seed form separate groups, named by their stream
(``results.group_keys``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clbench.metrics import average
from clbench.results import Filters, Records, Skipped, group_keys, problem, read, summarize
from clbench.results import Summary as Stat

__all__ = ["Collection", "Filters", "Group", "Run", "Skipped", "Stat", "collect", "group_runs",
           "name_groups", "problem"]

#: Config fields every group name shows; other fields appear only where they tell groups apart.
BASE = ("method", "scenario", "benchmark", "dataset", "model")
NOT_NAMED = {"seed", "data_seed", "tags", *BASE}
MAX_EXTRAS = 4


@dataclass(frozen=True)
class Run:
    """One variant of one complete record."""

    path: str  # relative to the results root
    record: dict[str, Any]
    variant: str

    @property
    def config(self) -> dict[str, Any]:
        return self.record["config"]

    @property
    def final(self) -> dict[str, Any]:
        return self.record["final"][self.variant]

    def curve(self, kind: str) -> dict[int, float]:
        """Mean over learned tasks at each checkpoint: ``accuracy``, ``task_inference`` or
        ``oracle``; checkpoints where it is undefined are left out."""
        out = {}
        for point in self.record["checkpoints"]:
            values = point["oracle"] if kind == "oracle" else point[kind][self.variant]
            if values:
                out[point["after_tasks"]] = average(values)
        return out

    def bytes(self) -> dict[str, int]:
        last = self.record["checkpoints"][-1].get("bytes") or {}
        return {enc: entry["bytes"] for enc, entry in last.items()}


@dataclass
class Group:
    """Runs of one config and variant over seeds, ordered by seed."""

    key: str
    variant: str
    runs: list[Run]
    name: str = ""
    short: str = ""  # the name without scenario, benchmark and dataset (a plot panel's title)
    run_name: str = ""  # the name without the variant (for what all variants share)
    run_short: str = ""  # the short name without the variant

    @property
    def config(self) -> dict[str, Any]:
        return self.runs[0].config

    @property
    def stream(self) -> str:
        """The stream this group is kept apart by ("" when its config's runs agree)."""
        return self.key.partition("~")[2]

    @property
    def setting(self) -> str:
        c = self.config
        return f"{c['scenario']} · {c['benchmark']} · {c['dataset']}"

    @property
    def seeds(self) -> str:
        return ", ".join(
            str(r.config["seed"]) + ("" if r.config["data_seed"] == r.config["seed"]
                                     else f" (data {r.config['data_seed']})")
            for r in self.runs)

    @property
    def tags(self) -> str:
        return ", ".join(sorted({t for r in self.runs for t in r.config.get("tags") or []}))

    def stat(self, get: Any, scale: float = 1.0) -> Stat:
        """Stat over the runs of ``get(run)``."""
        return summarize([get(r) for r in self.runs], scale)

    def curve(self, kind: str, scale: float = 100.0) -> dict[int, Stat]:
        curves = [r.curve(kind) for r in self.runs]
        points = sorted({t for c in curves for t in c})
        return {t: summarize([c.get(t) for c in curves], scale) for t in points}


@dataclass
class Collection:
    """What a results folder holds after filtering: groups of runs and skipped records."""

    root: Path
    groups: list[Group]
    skipped: list[Skipped]
    records: int = 0
    available: dict[str, set[str]] = field(default_factory=dict)
    source: Records | None = None  # what ``clbench.results.read`` returned


def collect(results: str | Path | None, filters: Filters = Filters()) -> Collection:
    """The records under ``results`` that pass ``filters`` (read by ``clbench.results``), as
    groups of runs, with the records skipped and why."""
    records = read(results, filters)
    runs = [Run(rel, record, variant) for rel, record in records.complete
            for variant in record["variants"]]
    return Collection(records.root, group_runs(runs), records.skipped, records.count,
                      records.available, records)


def group_runs(runs: list[Run]) -> list[Group]:
    """Runs (of complete records) into groups of one config and variant over seeds: ordered,
    each one's runs by seed, and named so that the names tell these groups apart."""
    groups: dict[tuple[str, str], Group] = {}
    for run, key in zip(runs, group_keys([run.record for run in runs])):
        groups.setdefault((key, run.variant), Group(key, run.variant, [])).runs.append(run)
    ordered = sorted(groups.values(), key=_order)
    for group in ordered:
        group.runs.sort(key=lambda r: (r.config["seed"], r.config["data_seed"], r.path))
    name_groups(ordered)
    return ordered


def _order(group: Group) -> tuple:
    """Setting, method and model; then other fields, numbers by value; variants in run order."""
    c = group.config
    rest = tuple((k, *_natural(v)) for k, v in sorted(flat_config(c).items()))
    variant = group.runs[0].record["variants"].index(group.variant)
    return (c["benchmark"], c["dataset"], c["scenario"], c["method"], c["model"], rest,
            group.key, variant)


def _natural(text: str) -> tuple[int, float, str]:
    try:
        return 0, float(text), ""
    except ValueError:
        return 1, 0.0, text


def _text(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(_text(v) for v in value)
    return str(value)


def flat_config(config: dict[str, Any]) -> dict[str, str]:
    """Config fields that are not in every name, flattened (params by their own names)."""
    out = {}
    for key, value in config.items():
        if key in NOT_NAMED:
            continue
        if isinstance(value, dict):
            prefix = "" if key == "params" else f"{key}."
            out.update({prefix + k: _text(v) for k, v in value.items()})
        else:
            out[key] = _text(value)
    return out


def name_groups(groups: list[Group]) -> None:
    """Readable names: method, variant, setting and model, plus the fields that tell apart
    groups which would otherwise share a name."""
    def label(g: Group, variant: bool) -> tuple[str, ...]:
        c = g.config
        method = c["method"] + (f" {g.variant}" if variant and g.variant != "default" else "")
        view = c.get("label_view", "task")
        scenario = c["scenario"] + ("" if view == "task" else f" ({view} view)")
        return (method, scenario, *(str(c[k]) for k in BASE[2:]))

    for variant in (True, False):
        clashes: dict[tuple[str, ...], list[Group]] = {}
        for g in groups:
            clashes.setdefault(label(g, variant), []).append(g)
        for base, members in clashes.items():
            flats = [flat_config(g.config) for g in members]
            keys = sorted({k for f in flats for k in f})
            differ = [k for k in keys if len({f.get(k, "—") for f in flats}) > 1]
            for g, f in zip(members, flats):
                extras = [f"{k}={f.get(k, '—')}" for k in differ[:MAX_EXTRAS]]
                if len(differ) > MAX_EXTRAS:
                    extras.append(f"config {g.key[:8]}")
                parts = [*base, *extras, *([f"stream {g.stream}"] if g.stream else [])]
                if variant:
                    g.name = " · ".join(parts)
                    g.short = " · ".join([parts[0], *parts[4:]])
                else:
                    g.run_name = " · ".join(parts)
                    g.run_short = " · ".join([parts[0], *parts[4:]])

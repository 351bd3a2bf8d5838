"""Records into runs and groups: checks, filters, and grouping of seeds (no method imported).

A run is one record and one of its variants; a group holds the runs whose configs differ only
in their seeds (``RunConfig.group_key``) and shares their variant.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clbench.config import RunConfig
from clbench.errors import ClbenchError
from clbench.metrics import average
from clbench.store import Store

#: Config fields every group name shows; other fields appear only where they tell groups apart.
BASE = ("method", "scenario", "benchmark", "dataset", "model")
NOT_NAMED = {"seed", "data_seed", "tags", *BASE}
MAX_EXTRAS = 4


@dataclass(frozen=True)
class Filters:
    """Keep records whose config has one of the given values (empty: keep all)."""

    method: tuple[str, ...] = ()
    scenario: tuple[str, ...] = ()
    benchmark: tuple[str, ...] = ()
    dataset: tuple[str, ...] = ()
    tag: tuple[str, ...] = ()

    def keep(self, config: dict[str, Any]) -> bool:
        for key in ("method", "scenario", "benchmark", "dataset"):
            wanted = getattr(self, key)
            if wanted and config.get(key) not in wanted:
                return False
        return not self.tag or bool(set(self.tag) & set(config.get("tags") or []))

    def describe(self) -> str:
        given = [f"--{k} {v}" for k in ("method", "scenario", "benchmark", "dataset", "tag")
                 for v in getattr(self, k)]
        return " ".join(given) or "none"


@dataclass(frozen=True)
class Stat:
    """Mean, sample standard deviation (None below two values) and count of some values."""

    mean: float | None
    std: float | None
    n: int

    @classmethod
    def of(cls, values: list[float | None], scale: float = 1.0) -> Stat:
        present = [v * scale for v in values if v is not None]
        if not present:
            return cls(None, None, 0)
        std = statistics.stdev(present) if len(present) > 1 else None
        return cls(statistics.fmean(present), std, len(present))


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
        return Stat.of([get(r) for r in self.runs], scale)

    def curve(self, kind: str, scale: float = 100.0) -> dict[int, Stat]:
        curves = [r.curve(kind) for r in self.runs]
        points = sorted({t for c in curves for t in c})
        return {t: Stat.of([c.get(t) for c in curves], scale) for t in points}


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str
    tags: tuple[str, ...] = ()  # the record's tags, when it could be read


@dataclass
class Collection:
    """What a results folder holds after filtering: groups of runs and skipped records."""

    root: Path
    groups: list[Group]
    skipped: list[Skipped]
    records: int = 0
    available: dict[str, set[str]] = field(default_factory=dict)


def problem(record: dict[str, Any]) -> str:
    """Why a loaded record cannot be reported ("" when it can)."""
    if record["status"] != "complete":
        error = str(record.get("error") or "no error given").strip().splitlines() or [""]
        return f"{record['status']}: {error[0]}"
    try:
        RunConfig.from_dict(record["config"])
        variants = record["variants"]
        if not record["checkpoints"] or not variants:
            return "no checkpoints or variants"
        for point in record["checkpoints"]:
            if len(point["oracle"]) != point["after_tasks"]:
                return f"checkpoint after {point['after_tasks']} tasks has a short oracle row"
            for v in variants:
                if len(point["accuracy"][v]) != point["after_tasks"]:
                    return f"checkpoint after {point['after_tasks']} tasks misses accuracies"
                _ = point["task_inference"][v]  # must exist, may be null
        _ = [record["final"][v]["accuracy"] for v in variants]
        _ = record["diagonal"], record["timing"]["total_s"]
    except (KeyError, TypeError, IndexError, AttributeError) as exc:
        return f"malformed record ({type(exc).__name__}: {exc})"
    return ""


def collect(results: str | Path | None, filters: Filters = Filters()) -> Collection:
    """Read every record under ``results``; keep complete ones that pass ``filters``, list
    the others (except those the filters exclude) as skipped, and group the rest."""
    store = Store(results)
    skipped: list[Skipped] = []
    runs: list[Run] = []
    seen: dict[str, str] = {}
    available: dict[str, set[str]] = {k: set() for k in ("method", "scenario", "benchmark",
                                                         "dataset", "tag")}
    count = 0
    for path, record, reason in store.records():
        count += 1
        rel = path.relative_to(store.root).as_posix()
        if record is None:
            skipped.append(Skipped(rel, reason.replace(f"record {path} ", "")))
            continue
        config = record["config"] if isinstance(record["config"], dict) else {}
        for key in ("method", "scenario", "benchmark", "dataset"):
            available[key].add(str(config.get(key)))
        available["tag"].update(config.get("tags") or [])
        if not filters.keep(config):
            continue
        why = problem(record)
        if not why and record.get("run_id") in seen:
            why = f"duplicate of {seen[record['run_id']]}"
        if why:
            skipped.append(Skipped(rel, why, _tags(config)))
            continue
        seen[record.get("run_id")] = rel
        runs += [Run(rel, record, variant) for variant in record["variants"]]
    if count == 0:
        raise ClbenchError(f"no records under {store.root}: run 'clbench run' first or point "
                           "--results at a results folder")
    return Collection(store.root, group_runs(runs), skipped, count, available)


def group_runs(runs: list[Run]) -> list[Group]:
    """Runs (of complete records) into groups of one config and variant over seeds: ordered,
    each one's runs by seed, and named so that the names tell these groups apart."""
    groups: dict[tuple[str, str], Group] = {}
    for run in runs:
        key = RunConfig.from_dict(run.config).group_key
        groups.setdefault((key, run.variant), Group(key, run.variant, [])).runs.append(run)
    ordered = sorted(groups.values(), key=_order)
    for group in ordered:
        group.runs.sort(key=lambda r: (r.config["seed"], r.config["data_seed"], r.path))
    name_groups(ordered)
    return ordered


def _tags(config: dict[str, Any]) -> tuple[str, ...]:
    tags = config.get("tags")
    return tuple(str(t) for t in tags) if isinstance(tags, list) else ()


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
                parts = [*base, *extras]
                if variant:
                    g.name = " · ".join(parts)
                    g.short = " · ".join([parts[0], *parts[4:]])
                else:
                    g.run_name = " · ".join(parts)
                    g.run_short = " · ".join([parts[0], *parts[4:]])

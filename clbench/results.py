"""Records as pandas frames, for your own analysis and for ``clbench report``.

``load`` gives one row per run × variant × evaluation point × task (tidy long form), ``runs``
one row per run × variant with its final metrics, and ``aggregate`` the mean, standard
deviation, standard error, 95 % interval and count over seeds. Accuracies are percentages.
``read`` and ``summarize`` are the one implementation of reading records and of statistics
that the report uses too. Only records are read (no method is imported); pandas is imported
when a frame is built.
"""

from __future__ import annotations

import json
import math
import statistics
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clbench.config import RunConfig
from clbench.errors import ClbenchError
from clbench.store import Store

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Filters", "SkippedRecord", "Summary", "aggregate", "export", "load", "read",
           "runs", "summarize"]

#: Config columns, in frame order (``param.NAME`` columns follow ``model``).
CONFIG = ("method", "scenario", "benchmark", "dataset", "model", "density", "label_view",
          "tasks", "iters", "epochs", "batch_size", "eval_batch_size", "seed", "data_seed",
          "threads", "device", "eval_at", "val_fraction", "tags")
RUN_ID = ("record", "run_id", "group", "variant")
FINAL = ("accuracy", "oracle_accuracy", "task_inference", "forgetting", "backward_transfer")
TIMING = ("setup_s", "train_s", "eval_s", "total_s")
STATS = ("mean", "std", "sem", "ci95_low", "ci95_high", "n")
#: Two-sided 95 % quantiles of Student's t for 1-30 degrees of freedom.
T95 = (12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281,
       2.2010, 2.1788, 2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860,
       2.0796, 2.0739, 2.0687, 2.0639, 2.0595, 2.0555, 2.0518, 2.0484, 2.0452, 2.0423)


class SkippedRecord(UserWarning):
    """A record that could not be used: unreadable, failed, malformed or a duplicate."""


# ------------------------------------------------------------------ statistics


@dataclass(frozen=True)
class Summary:
    """Mean, sample standard deviation, standard error and 95 % t interval of some values
    (spread is None below two values; everything None without values)."""

    mean: float | None
    std: float | None
    n: int
    sem: float | None = None
    ci95_low: float | None = None
    ci95_high: float | None = None


def t95(df: int) -> float:
    """Student's t quantile for a two-sided 95 % interval (table to 30, then expanded)."""
    if df <= len(T95):
        return T95[df - 1]
    z = 1.959964
    return z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df ** 2)


def summarize(values: Iterable[float | None], scale: float = 1.0) -> Summary:
    """Statistics of the defined values (None and NaN left out), each times ``scale``."""
    present = [float(v) * scale for v in values if v is not None and not _nan(v)]
    if not present:
        return Summary(None, None, 0)
    mean = statistics.fmean(present)
    if len(present) < 2:
        return Summary(mean, None, 1)
    std = statistics.stdev(present)
    sem = std / math.sqrt(len(present))
    half = t95(len(present) - 1) * sem
    return Summary(mean, std, len(present), sem, mean - half, mean + half)


def _nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


# ------------------------------------------------------------------ reading


@dataclass(frozen=True)
class Filters:
    """Keep records whose config has one of the given values (empty: keep all); ``tag``
    keeps records carrying any of the tags."""

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
class Skipped:
    path: str
    reason: str
    tags: tuple[str, ...] = ()  # the record's tags, when it could be read


@dataclass
class Records:
    """The complete records of a results folder that pass the filters, and those skipped."""

    root: Path
    complete: list[tuple[str, dict[str, Any]]]  # (path relative to root, record)
    skipped: list[Skipped]
    count: int = 0  # record files read
    available: dict[str, set[str]] = field(default_factory=dict)  # values seen, per filter


def problem(record: dict[str, Any]) -> str:
    """Why a loaded record cannot be used ("" when it can)."""
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


def read(results: str | Path | None = None, filters: Filters = Filters()) -> Records:
    """Every record under ``results`` (migrated to the current schema): the complete ones that
    pass ``filters``, and the others (but those the filters exclude) with the reason."""
    store = Store(results)
    out = Records(store.root, [], [], available={k: set() for k in (
        "method", "scenario", "benchmark", "dataset", "tag")})
    seen: dict[str, str] = {}
    for path, record, reason in store.records():
        out.count += 1
        rel = path.relative_to(store.root).as_posix()
        if record is None:
            out.skipped.append(Skipped(rel, reason.replace(f"record {path} ", "")))
            continue
        config = record["config"] if isinstance(record["config"], dict) else {}
        for key in ("method", "scenario", "benchmark", "dataset"):
            out.available[key].add(str(config.get(key)))
        out.available["tag"].update(config.get("tags") or [])
        if not filters.keep(config):
            continue
        why = problem(record)
        if not why and record.get("run_id") in seen:
            why = f"duplicate of {seen[record['run_id']]}"
        if why:
            tags = config.get("tags")
            out.skipped.append(Skipped(rel, why, tuple(map(str, tags)) if isinstance(
                tags, list) else ()))
            continue
        seen[record.get("run_id")] = rel
        out.complete.append((rel, record))
    if out.count == 0:
        raise ClbenchError(f"no records under {store.root}: run 'clbench run' first or point "
                           "--results at a results folder")
    return out


# ------------------------------------------------------------------ streams


def stream_of(record: dict[str, Any]) -> str | None:
    """The stream identity a record names (``stream.identity``); None for records written
    before it was kept, whose stream follows from their config (benchmark, dataset, tasks,
    data seed)."""
    stream = record.get("stream")
    return stream.get("identity") if isinstance(stream, dict) else None


def group_keys(records: Sequence[dict[str, Any]]) -> list[str]:
    """Each record's group: its config without seeds (``RunConfig.group_key``), plus
    ``~<stream>`` where runs of that config name different streams for one data seed (a record
    without an identity agrees with any), so that no mean mixes two streams of one seed."""
    keys = [RunConfig.from_dict(r["config"]).group_key for r in records]
    named: dict[tuple[str, Any], set[str]] = {}
    for key, record in zip(keys, records):
        identity = stream_of(record)
        if identity is not None:
            named.setdefault((key, record["config"]["data_seed"]), set()).add(identity)
    mixed = {key for key, identities in named.items() if len(identities) > 1}
    return [f"{key}~{(stream_of(r) or '')[:8] or 'unrecorded'}"
            if (key, r["config"]["data_seed"]) in mixed else key for key, r in zip(keys, records)]


# ------------------------------------------------------------------ frames


def _text(value: Any) -> Any:
    """Lists as comma-separated text, so that every cell is a scalar."""
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return value


def config_columns(record: dict[str, Any], path: str, variant: str, group: str
                   ) -> dict[str, Any]:
    """The identifying and config columns of one run and variant (params as ``param.NAME``);
    ``group`` is the record's from :func:`group_keys`."""
    config = record["config"]
    row: dict[str, Any] = {"record": path, "run_id": record["run_id"], "group": group,
                           "variant": variant}
    for key in CONFIG[:5]:
        row[key] = config.get(key)
    for name, value in sorted((config.get("params") or {}).items()):
        row[f"param.{name}"] = _text(value)
    for key in CONFIG[5:]:
        row[key] = _text(config.get(key))
    return row


def _pct(value: float | None) -> float | None:
    return None if value is None else value * 100


def _bytes(point: dict[str, Any]) -> dict[str, int]:
    return {f"bytes_{enc}": entry["bytes"] for enc, entry in sorted(
        (point.get("bytes") or {}).items())}


def run_rows(records: Records) -> list[dict[str, Any]]:
    """One row per run and variant: config, final metrics (%), bytes at the end, timing."""
    rows = []
    groups = group_keys([record for _, record in records.complete])
    for (path, record), group in zip(records.complete, groups):
        timing = record["timing"]
        per_task = timing.get("train_s_per_task")
        for variant in record["variants"]:
            final = record["final"][variant]
            row = config_columns(record, path, variant, group)
            row["after_tasks"] = record["checkpoints"][-1]["after_tasks"]
            row.update({k: _pct(final.get(k)) for k in FINAL})
            row.update(_bytes(record["checkpoints"][-1]))
            row.update({k: timing.get(k) for k in TIMING})
            row["train_s_per_task"] = statistics.fmean(per_task) if per_task else None
            row["peak_memory_mb"] = record.get("peak_memory_mb")
            rows.append(row)
    return rows


def task_rows(records: Records) -> list[dict[str, Any]]:
    """One row per run, variant, evaluation point and task learned by then."""
    rows = []
    groups = group_keys([record for _, record in records.complete])
    for (path, record), group in zip(records.complete, groups):
        diagonal = record["diagonal"]
        per_task = record["timing"].get("train_s_per_task") or []
        after_task = record["timing"].get("eval_s_per_task") or []
        for variant in record["variants"]:
            head = config_columns(record, path, variant, group)
            for point in record["checkpoints"]:
                inference = point["task_inference"][variant]
                size = _bytes(point)
                for t in range(point["after_tasks"]):
                    rows.append({
                        **head, "after_tasks": point["after_tasks"], "task": t + 1,
                        "accuracy": _pct(point["accuracy"][variant][t]),
                        "oracle": _pct(point["oracle"][t]),
                        "task_inference": _pct(inference[t]) if inference else None,
                        "just_learned": _pct(diagonal[t]) if t < len(diagonal) else None,
                        **size,
                        "train_s_task": per_task[t] if t < len(per_task) else None,
                        "eval_s_task": after_task[t] if t < len(after_task) else None})
    return rows


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    import pandas as pd

    frame = pd.DataFrame.from_records(rows)
    params = sorted(c for c in frame.columns if c.startswith("param."))
    byte_columns = sorted(c for c in frame.columns if c.startswith("bytes_"))
    if byte_columns:  # an encoding a run does not use stays empty, as an integer column
        frame[byte_columns] = frame[byte_columns].astype("Int64")
    head = [c for c in (*RUN_ID, *CONFIG[:5]) if c in frame.columns]
    config = [c for c in CONFIG[5:] if c in frame.columns]
    rest = [c for c in frame.columns if c not in {*head, *params, *config, *byte_columns}]
    for column in [*head, *params, *config]:  # whole numbers with gaps stay whole
        values = [v for v in frame[column] if v is not None and not _nan(v)]
        if values and frame[column].isna().any() and all(
                isinstance(v, int | float) and not isinstance(v, bool) and float(v).is_integer()
                for v in values):
            frame[column] = frame[column].astype("Int64")
    return frame[[*head, *params, *config, *rest, *byte_columns]]


def _select(filters: dict[str, Any]) -> tuple[Filters, dict[str, list[str]]]:
    """The report's filters among ``filters``, and the others (config columns)."""
    report_keys = ("method", "scenario", "benchmark", "dataset", "tag")
    listed = {k: [str(v) for v in (value if isinstance(value, list | tuple | set) else [value])]
              for k, value in filters.items()}
    return (Filters(**{k: tuple(listed[k]) for k in report_keys if k in listed}),
            {k: v for k, v in listed.items() if k not in report_keys})


def _records(results: str | Path | None, filters: dict[str, Any]) -> tuple[Records,
                                                                         dict[str, list[str]]]:
    base, others = _select(filters)
    records = read(results, base)
    for skipped in records.skipped:
        warnings.warn(f"skipped {records.root / skipped.path}: {skipped.reason}",
                      SkippedRecord, stacklevel=3)
    return records, others


def _filtered(frame: pd.DataFrame, others: dict[str, list[str]]) -> pd.DataFrame:
    """Rows whose column (or ``param.NAME``) shows one of the wanted values as text."""
    for key, wanted in others.items():
        column = key if key in frame.columns else f"param.{key}"
        if column not in frame.columns:
            known = ", ".join(c for c in frame.columns if c not in RUN_ID)
            raise ClbenchError(f"cannot filter on '{key}': use one of {known}")
        frame = frame[frame[column].map(_shown).isin(wanted)]
    return frame.reset_index(drop=True)


def _shown(value: Any) -> str:
    import pandas as pd

    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return "None"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def load(results: str | Path | None = None, **filters: Any) -> pd.DataFrame:
    """Tidy long form: one row per run × variant × evaluation point × task.

    Columns: ``record``, ``run_id``, ``group`` (the config without its seeds; see
    :func:`group_keys` for runs of different streams), ``variant``, the
    config (``param.NAME`` for params), ``after_tasks`` (tasks learned at the evaluation
    point), ``task`` (1-based), ``accuracy`` (the scenario's rule), ``oracle`` (task given),
    ``task_inference`` and ``just_learned`` (the task's oracle accuracy right after learning
    it), all in %; ``bytes_ENCODING`` stored at that point; ``train_s_task`` and
    ``eval_s_task``, the seconds of the task's training and of the work after it (scoring, its
    evaluation point; absent from records before it was kept). ``filters`` keep
    rows whose config value is one of those given (a value or a list; ``tag`` matches any of
    a record's tags). Unusable records are skipped with a :class:`SkippedRecord` warning."""
    records, others = _records(results, filters)
    return _filtered(_frame(task_rows(records)), others)


def runs(results: str | Path | None = None, **filters: Any) -> pd.DataFrame:
    """One row per run × variant: the config, ``after_tasks`` of the last evaluation, the final
    ``accuracy``, ``oracle_accuracy``, ``task_inference``, ``forgetting`` and
    ``backward_transfer`` (%, points for the last two), ``bytes_ENCODING`` at the end, timing
    in seconds and ``peak_memory_mb``. Filters and skipping as :func:`load`."""
    records, others = _records(results, filters)
    return _filtered(_frame(run_rows(records)), others)


def aggregate(frame: pd.DataFrame, by: Sequence[str] | None = None,
              metrics: Sequence[str] | None = None) -> pd.DataFrame:
    """Statistics over the rows of each group (over seeds, for a :func:`runs` frame).

    ``by`` defaults to ``group`` and ``variant`` with the config columns that are equal
    within each group (so the result is labelled). ``metrics`` defaults to every numeric
    column outside the config. Each metric M gives ``M_mean``, ``M_std``, ``M_sem``,
    ``M_ci95_low``, ``M_ci95_high`` (Student's t) and ``M_n``; ``n`` counts the rows and
    ``seeds`` lists their seeds. Missing values are left out of a metric's statistics."""
    import pandas as pd

    by = list(by) if by is not None else _default_by(frame)
    unknown = [c for c in [*by, *(metrics or [])] if c not in frame.columns]
    if unknown:
        raise ClbenchError(f"no column {', '.join(unknown)}: use one of "
                           f"{', '.join(frame.columns)}")
    if metrics is None:
        metrics = [c for c in frame.columns if c not in by and _is_metric(frame, c)]
    rows = []
    for key, part in frame.groupby(by, sort=False, dropna=False):
        row = dict(zip(by, key if isinstance(key, tuple) else (key,)))
        row["n"] = len(part)
        if "seed" in part.columns:
            row["seeds"] = ",".join(str(s) for s in sorted(part["seed"].unique()))
        for metric in metrics:
            stat = summarize(part[metric].dropna().tolist())
            row.update({f"{metric}_{s}": getattr(stat, s) for s in STATS})
        rows.append(row)
    return pd.DataFrame.from_records(rows)


def _is_metric(frame: pd.DataFrame, column: str) -> bool:
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    config = {*RUN_ID, *CONFIG, "after_tasks", "task"}
    return (column not in config and not column.startswith("param.")
            and is_numeric_dtype(frame[column]) and not is_bool_dtype(frame[column]))


def _default_by(frame: pd.DataFrame) -> list[str]:
    """``group`` and ``variant`` (and, in a tidy frame, the evaluation point and task), with
    the config columns constant within each group."""
    keys = [c for c in ("group", "variant", "after_tasks", "task") if c in frame.columns]
    if "group" not in keys:
        raise ClbenchError("aggregate needs 'by' for a frame without a 'group' column")
    constant = [c for c in frame.columns if c not in keys and c not in (
        "record", "run_id", "seed", "data_seed", "tags")
        and (c in CONFIG or c.startswith("param."))
        and (frame.groupby(keys, dropna=False)[c].nunique(dropna=False) <= 1).all()]
    return [*keys[:2], *constant, *keys[2:]]


# ------------------------------------------------------------------ export

WHAT = ("tasks", "runs", "aggregate")
FORMATS = ("csv", "jsonl")


def export(what: str = "runs", fmt: str = "csv", results: str | Path | None = None,
           **filters: Any) -> str:
    """A frame as text: ``what`` is ``tasks`` (:func:`load`), ``runs`` (:func:`runs`) or
    ``aggregate`` (:func:`aggregate` of the runs); ``fmt`` is ``csv`` or ``jsonl`` (one JSON
    object per line, empty cells as null). Floats keep every digit, so the rows read back
    equal the frame's."""
    if what not in WHAT:
        raise ClbenchError(f"--what {what}: choose one of {', '.join(WHAT)}")
    if fmt not in FORMATS:
        raise ClbenchError(f"--format {fmt}: choose one of {', '.join(FORMATS)}")
    frame = load(results, **filters) if what == "tasks" else runs(results, **filters)
    if frame.empty:
        shown = " ".join(f"--{k} {v}" for k, v in filters.items()) or "no filters"
        raise ClbenchError(f"no complete records match {shown}: drop a filter or check "
                           "--results")
    if what == "aggregate":
        frame = aggregate(frame)
    if fmt == "csv":
        return frame.to_csv(index=False, lineterminator="\n")
    cells = frame.astype(object).where(frame.notna(), None)
    return "".join(json.dumps(row, ensure_ascii=False, default=_plain) + "\n"
                   for row in cells.to_dict(orient="records"))


def _plain(value: Any) -> Any:
    """numpy scalars as Python numbers (``json`` knows only the latter)."""
    return value.item() if hasattr(value, "item") else str(value)

"""``reproduce.yaml``, the experiments that reproduce the paper, rendered with the records as
``REPRODUCTION.md``: per experiment its commands, status, clbench's groups among the runs
carrying its tags (``runs.group_runs``), its reference values (by published id from
``published.yaml``, or literal) with the gap to them, and its notes.
"""

from __future__ import annotations

import shlex
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from clbench.errors import ClbenchError
from clbench.report.figures import Chart, FigureSpec, check_spec, numbers_at_points
from clbench.report.labels import labels
from clbench.report.published import Published, setting_matches
from clbench.report.runs import Collection, Group, Run, Skipped, Stat, group_runs
from clbench.report.tables import Column, Table, final, human_bytes, stream_note

FILE = "reproduce.yaml"
PAGE = "REPRODUCTION.md"
GAP_NOTE = 2.0  # points: a larger gap to a reference needs a note on its cause
WIDTH = 92  # where a shown command wraps

REQUIRED = ("id", "title", "tag", "commands", "budget")
OPTIONAL = ("also_tags", "reference", "extras", "notes", "headline", "figures")
README_START = "<!-- reproduction-headline:start -->"  # the block `clbench report` keeps in sync
README_END = "<!-- reproduction-headline:end -->"
REFERENCE_KEYS = ("label", "source", "accuracy", "value", "setting")
EXTRA_KEYS = ("label", "key", "reduce", "scale", "digits")
REDUCE: dict[str, Callable[[list[float]], float]] = {
    "last": lambda v: v[-1], "min": min, "max": max, "mean": statistics.fmean}


@dataclass(frozen=True)
class Reference:
    """A value to compare with: a published one (``id``) or a literal with its source."""

    label: str
    source: str
    accuracy: float | None = None
    value: str = ""
    setting: dict[str, Any] | None = None
    id: str = ""
    range: tuple[float, float] | None = None

    @classmethod
    def published(cls, p: Published) -> Reference:
        value = "" if p.bytes is None else human_bytes(p.bytes)
        return cls(p.label, p.source, p.accuracy, value, p.setting, p.id, p.range)

    def matches(self, group: Group) -> bool:
        return self.accuracy is not None and setting_matches(self.setting, group)

    def shown(self) -> str:
        parts = [self.value] if self.value else []
        if self.accuracy is not None:
            spread = f" ({self.range[0]:.2f}–{self.range[1]:.2f})" if self.range else ""
            parts.insert(0, f"{self.accuracy:.2f} %{spread}")
        return " · ".join(parts) or "—"


@dataclass(frozen=True)
class Extra:
    """A number from each record's ``extras`` (a dotted key; a list reduced to one value)."""

    label: str
    key: str
    reduce: str = "last"
    scale: float = 1.0
    digits: int = 2

    def get(self, run: Run) -> float | None:
        value: Any = run.record.get("extras") or {}
        for part in self.key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if isinstance(value, list):
            if not value or not all(_number(v) for v in value):
                return None
            value = REDUCE[self.reduce](value)
        return value * self.scale if _number(value) else None

    def cell(self, stat: Stat, runs: int) -> str:
        if stat.mean is None:
            return "—"
        text = f"{stat.mean:.{self.digits}f}"
        text += f" ± {stat.std:.{self.digits}f}" if stat.std is not None else ""
        return text + (f" (n={stat.n})" if stat.n < runs else "")


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass(frozen=True)
class Experiment:
    id: str
    title: str
    tag: str
    also_tags: tuple[str, ...]
    commands: tuple[str, ...]
    budget: str
    references: tuple[Reference, ...] = ()
    extras: tuple[Extra, ...] = ()
    notes: str = ""
    headline: bool = False
    figures: tuple[FigureSpec, ...] = ()

    @property
    def tags(self) -> tuple[str, ...]:
        return (self.tag, *self.also_tags)

    def selects(self, tags: Any) -> bool:
        return bool(set(self.tags) & set(tags or ()))


# ------------------------------------------------------------------ reading and checking


def find(results_root: Path, given: str | Path | None = None) -> Path | None:
    """``given`` (which must exist), else ``reproduce.yaml`` beside the results folder."""
    if given is not None:
        path = Path(given).expanduser()
        if not path.is_file():
            raise ClbenchError(f"--reproduce {given}: no such file; point it at a "
                               f"{FILE} or leave it out")
        return path
    path = results_root.parent / FILE
    return path if path.is_file() else None


def load(path: Path, published: list[Published]) -> list[Experiment]:
    """The experiments of a ``reproduce.yaml``, checked; a one-line error names the fix."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ClbenchError(f"{path}: {exc.strerror or exc}: point --reproduce at a readable "
                           "file") from None
    except yaml.YAMLError as exc:
        raise ClbenchError(f"{path} is not valid YAML ({' '.join(str(exc).split())}): fix "
                           "its syntax") from None
    items = data.get("experiments") if isinstance(data, dict) else None
    if not isinstance(items, list) or not items:
        raise ClbenchError(f"{path}: expected a mapping with a non-empty list 'experiments'")
    by_id = {p.id: p for p in published}
    out: list[Experiment] = []
    for index, item in enumerate(items, 1):
        experiment = _experiment(item, f"{path}: experiment", index, by_id)
        if experiment.id in {e.id for e in out}:
            raise ClbenchError(f"{path}: experiment id '{experiment.id}' is used twice: give "
                               "each experiment its own id")
        out.append(experiment)
    return out


def _keys(where: str, item: Any, required: tuple[str, ...], optional: tuple[str, ...]) -> None:
    if not isinstance(item, dict):
        raise ClbenchError(f"{where}: expected a mapping with keys {', '.join(required)}")
    missing = [k for k in required if item.get(k) in (None, "", [])]
    if missing:
        raise ClbenchError(f"{where}: missing {', '.join(missing)}: add it")
    unknown = sorted(set(map(str, item)) - set(required) - set(optional))
    if unknown:
        raise ClbenchError(f"{where}: unknown key {', '.join(unknown)}: use "
                           f"{', '.join(required + optional)}")


def _text(where: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ClbenchError(f"{where}: expected text, got {value!r}")
    return " ".join(value.split())


def _list(where: str, value: Any) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ClbenchError(f"{where}: expected a list (write '- item' lines or [a, b])")
    return value


def _experiment(item: Any, prefix: str, index: int,
                by_id: dict[str, Published]) -> Experiment:
    _keys(f"{prefix} {index}", item, REQUIRED, OPTIONAL)
    ident = _text(f"{prefix} {index} id", item["id"])
    where = f"{prefix} '{ident}'"
    tags = tuple(_text(f"{where} tags", t) for t in [item["tag"], *_list(
        f"{where} also_tags", item.get("also_tags"))])
    commands = tuple(_command(f"{where} command", c, tags)
                     for c in _list(f"{where} commands", item["commands"]))
    references = tuple(_reference(f"{where} reference", r, by_id)
                       for r in _list(f"{where} reference", item.get("reference")))
    extras = tuple(_extra(f"{where} extras", e)
                   for e in _list(f"{where} extras", item.get("extras")))
    notes = _text(f"{where} notes", item["notes"]) if item.get("notes") else ""
    headline = item.get("headline", False)
    if not isinstance(headline, bool):
        raise ClbenchError(f"{where} headline: expected true or false, got {headline!r}")
    figures = tuple(check_spec(f"{where} figure", f, i) for i, f in enumerate(
        _list(f"{where} figures", item.get("figures")), 1))
    if len({f.id for f in figures}) < len(figures):
        raise ClbenchError(f"{where}: two figures share an id: give each its own")
    return Experiment(ident, _text(f"{where} title", item["title"]), tags[0], tags[1:],
                      commands, _text(f"{where} budget", str(item["budget"])), references,
                      extras, notes, headline, figures)


def _command(where: str, command: Any, tags: tuple[str, ...]) -> str:
    text = _text(where, command)
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise ClbenchError(f"{where} '{text[:40]}...': {exc}: fix its quoting") from None
    if words[:2] != ["clbench", "sweep"]:
        raise ClbenchError(f"{where} '{text[:40]}...': start it with 'clbench sweep'")
    given = {w.split("=", 1)[1] for w in words if w.startswith("--tag=")}
    given |= {b for a, b in zip(words, words[1:]) if a == "--tag"}
    if not given & set(tags):
        raise ClbenchError(f"{where} '{text[:40]}...': add --tag {tags[0]} (the report finds "
                           "the experiment's records by their tags)")
    return text


def _reference(where: str, item: Any, by_id: dict[str, Published]) -> Reference:
    if isinstance(item, dict) and "published" in item:
        _keys(where, item, ("published",), ())
        if item["published"] not in by_id:
            raise ClbenchError(f"{where}: no published value '{item['published']}': use an id "
                               "of clbench/report/published.yaml")
        return Reference.published(by_id[item["published"]])
    _keys(where, item, ("label", "source"), REFERENCE_KEYS[2:])
    accuracy, setting = item.get("accuracy"), item.get("setting")
    if accuracy is not None and not _number(accuracy):
        raise ClbenchError(f"{where}: accuracy must be a number (percent), got {accuracy!r}")
    if setting is not None and not isinstance(setting, dict):
        raise ClbenchError(f"{where}: setting must be a mapping of config fields, as in "
                           "published.yaml")
    return Reference(_text(where, item["label"]), _text(where, item["source"]),
                     None if accuracy is None else float(accuracy),
                     _text(where, str(item["value"])) if item.get("value") else "", setting)


def _extra(where: str, item: Any) -> Extra:
    _keys(where, item, ("label", "key"), EXTRA_KEYS[2:])
    reduce = item.get("reduce", "last")
    if reduce not in REDUCE:
        raise ClbenchError(f"{where}: reduce '{reduce}': use one of {', '.join(REDUCE)}")
    scale, digits = item.get("scale", 1.0), item.get("digits", 2)
    if not _number(scale) or not isinstance(digits, int) or not 0 <= digits <= 6:
        raise ClbenchError(f"{where}: scale must be a number and digits an integer 0-6")
    return Extra(_text(where, item["label"]), _text(where, item["key"]), reduce,
                 float(scale), digits)


# ------------------------------------------------------------------ the page


@dataclass
class Found:
    """What the records hold for one experiment."""

    runs: list[Run]
    groups: list[Group]
    failed: list[Skipped]

    @property
    def records(self) -> list[Run]:
        """One run per record (the first variant)."""
        first: dict[str, Run] = {}
        for run in self.runs:
            first.setdefault(run.path, run)
        return [first[path] for path in sorted(first)]

    def status(self) -> str:
        if not self.runs and not self.failed:
            return "not run yet"
        text = (f"{_count(len(self.records), 'record')} found: "
                f"{_count(len(self.runs), 'run')} in {_count(len(self.groups), 'group')}"
                if self.runs else "no complete record")
        return text + (f", {len(self.failed)} failed or unreadable" if self.failed else "")

    def machine_time(self) -> str:
        """Summed wall time of the records, per thread count."""
        by_threads: dict[int, list[float]] = {}
        for run in self.records:
            by_threads.setdefault(run.config["threads"], []).append(
                run.record["timing"]["total_s"])
        return "; ".join(f"{_duration(sum(times))} at {_count(n, 'thread')} "
                         f"({_count(len(times), 'record')})"
                         for n, times in sorted(by_threads.items())) or "—"


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'s' * (n != 1)}"


def _duration(seconds: float) -> str:
    minutes = seconds / 60
    return f"{minutes:.1f} min" if minutes < 100 else f"{minutes / 60:.2f} h"


def chart_refs(experiment: Experiment) -> list[tuple[str, float, float, dict[str, Any]]]:
    """The experiment's reference values with an accuracy and a number of tasks, as points
    (label, tasks, accuracy, setting) for its accuracy-vs-tasks figures."""
    return [(f"{'published' if r.id else 'reference'}: {r.label}", r.setting["tasks"],
             r.accuracy, r.setting)
            for r in experiment.references if r.accuracy is not None and r.setting
            and isinstance(r.setting.get("tasks"), int | float)]


def find_runs(experiment: Experiment, collection: Collection) -> Found:
    runs = [r for g in collection.groups for r in g.runs
            if experiment.selects(r.config.get("tags"))]
    failed = [s for s in collection.skipped if experiment.selects(s.tags)]
    return Found(runs, group_runs(runs), failed)


def render(experiments: list[Experiment], collection: Collection, source: str,
           charts: dict[str, list[tuple[FigureSpec, Chart | None]]] | None = None) -> str:
    """The page: a summary table, then a section per experiment with its figures
    (``charts``, drawn by the report, by experiment id)."""
    found = [find_runs(e, collection) for e in experiments]
    parts = [
        "# Reproduction",
        "",
        f"Generated by `clbench report` from `{source}` and the records in "
        f"`{collection.root}`; edit `{source}` and regenerate rather than editing this page. "
        "Each experiment shows its commands (run from the repository root), the clbench groups "
        "whose records carry its tags, the reference values with their sources, and notes on "
        "the gaps. Accuracies are percentages after the last task, in the scenario's rule; "
        "cells are mean ± sample standard deviation over a group's seeds (no ± with one "
        "seed), `n` is the number of seeds, and a gap is clbench's mean minus the reference, "
        "in points. Machine time is the summed wall time of the records, with their threads.",
        "",
        "## Summary",
        "",
        summary_table(experiments, found).markdown(),
    ]
    if any(e.headline for e in experiments):
        parts += ["", "## Headline", "",
                  "The experiments marked `headline` in the file, one row per group (the "
                  "README shows this table).", "",
                  headline_table(experiments, found).markdown()]
    for number, (experiment, got) in enumerate(zip(experiments, found), 1):
        parts += ["", *section(number, experiment, got, (charts or {}).get(experiment.id, []))]
    return "\n".join(parts) + "\n"


def summary_table(experiments: list[Experiment], found: list[Found]) -> Table:
    columns = [Column("#", "int"), Column("experiment"), Column("tag"), Column("status"),
               Column("budget"), Column("machine time")]
    rows = [[i, e.title, e.tag, f.status(), e.budget, f.machine_time()]
            for i, (e, f) in enumerate(zip(experiments, found), 1)]
    return Table("reproduction", "Summary", "", columns, rows)


def headline_table(experiments: list[Experiment], found: list[Found]) -> Table:
    """One row per group of each ``headline`` experiment: its accuracy, task inference and the
    gap to the reference values with an accuracy (a row saying so for an experiment not run
    yet)."""
    columns = [Column("#", "int"), Column("experiment"), Column("group"), Column("n", "int"),
               Column("accuracy (%)", "pct"), Column("task inference (%)", "pct"),
               Column("reference"), Column("gap (points)")]
    rows: list[list[Any]] = []
    for number, (experiment, got) in enumerate(zip(experiments, found), 1):
        if not experiment.headline:
            continue
        gaps = matches(experiment, got.groups)
        names = labels(got.groups)
        for group in got.groups:
            mine = [(ref, gap) for ref, g, gap in gaps if g is group]
            rows.append([number, experiment.id, names[id(group)], len(group.runs),
                         group.stat(final("accuracy"), 100),
                         group.stat(final("task_inference"), 100),
                         "; ".join(f"{ref.accuracy:.2f} %" for ref, _ in mine) or "—",
                         "; ".join(f"{gap:+.2f}" for _, gap in mine) or "—"])
        if not got.groups:
            rows.append([number, experiment.id, got.status(), None, None, None, "—", "—"])
    return Table("reproduction-headline", "Headline", "", columns, rows)


def headline(experiments: list[Experiment], collection: Collection) -> str | None:
    """The headline table's markdown (None when no experiment is marked ``headline``)."""
    if not any(e.headline for e in experiments):
        return None
    return headline_table(experiments, [find_runs(e, collection) for e in experiments]).markdown()


def with_headline(readme: str, table: str) -> str | None:
    """``readme`` with the text between its headline markers replaced by ``table`` (None when
    it has no such block)."""
    start, end = readme.find(README_START), readme.find(README_END)
    if start < 0 or end < start:
        return None
    return f"{readme[:start + len(README_START)]}\n{table}\n{readme[end:]}"


def section(number: int, experiment: Experiment, found: Found,
            charts: list[tuple[FigureSpec, Chart | None]] = ()) -> list[str]:
    tags = f"`{experiment.tag}`" + (
        f" (also `{'`, `'.join(experiment.also_tags)}`)" if experiment.also_tags else "")
    lines = [f"## {number}. {experiment.title}", "",
             f"- id: `{experiment.id}`; tag: {tags}",
             f"- budget: {experiment.budget}",
             f"- status: {found.status()}",
             f"- machine time: {found.machine_time()}",
             "", "```bash", *(wrap(c) for c in experiment.commands), "```", ""]
    lines.append(groups_table(experiment, found.groups).markdown() if found.groups
                 else "_No runs yet._")
    if note := stream_note(found.groups):
        lines += ["", note]
    for spec, chart in charts:
        if chart is None:
            lines += ["", f"**{spec.title}**: not run yet (no record of its series)."]
        else:
            lines += ["", f"![{spec.title}](plots/{chart.stem}.png)", "",
                      f"**{spec.title}**. {chart.caption} Plotted numbers: "
                      f"[CSV](plots/{chart.stem}.csv)."]
            if (table := points_table(chart)) is not None:
                lines += ["", table.markdown()]
    lines += ["", "Reference:", ""]
    references = references_table(experiment, found.groups)
    lines.append(references.markdown() if references.rows
                 else "_None: no paper value applies (see the notes)._")
    if experiment.notes:
        lines += ["", f"Notes: {experiment.notes}"]
    elif any(abs(gap) > GAP_NOTE for _, _, gap in matches(experiment, found.groups)):
        lines += ["", f"**A gap above {GAP_NOTE:g} points has no note: add one to "
                      f"`{FILE}`.**"]
    return lines


def points_table(chart: Chart) -> Table | None:
    """The numbers of a tasks figure at its evaluation points (%), a row per series and
    metric; None for other figures."""
    xs, rows = numbers_at_points(chart)
    if not xs:
        return None
    columns = [Column("series"), Column("metric"), *(Column(f"after {t}", "pct") for t in xs)]
    return Table(chart.stem, chart.title, "", columns,
                 [[label, metric.replace("_", " "), *(values.get(t) for t in xs)]
                  for label, metric, values in rows])


def wrap(command: str) -> str:
    """The command on lines of at most ``WIDTH`` characters (unless one option is longer),
    broken before options and continued with ``\\``."""
    chunks: list[str] = []
    for word in (shlex.quote(w) for w in shlex.split(command)):
        if word.startswith("--") or not chunks:
            chunks.append(word)
        else:
            chunks[-1] += f" {word}"
    lines = [chunks[0]]
    for chunk in chunks[1:]:
        if len(lines[-1]) + 1 + len(chunk) > WIDTH - 2:
            lines.append(f"    {chunk}")
        else:
            lines[-1] += f" {chunk}"
    return " \\\n".join(lines)


def groups_table(experiment: Experiment, groups: list[Group]) -> Table:
    inference = any(r.final.get("task_inference") is not None for g in groups for r in g.runs)
    columns = [Column("group"), Column("n", "int"), Column("seeds"), Column("tasks", "int"),
               Column("accuracy (%)", "pct")]
    columns += [Column("task inference (%)", "pct")] if inference else []
    columns += [Column(x.label) for x in experiment.extras] + [Column("bytes")]
    rows = []
    names = labels(groups)
    for g in groups:
        row = [names[id(g)], len(g.runs), g.seeds, g.config["tasks"],
               g.stat(final("accuracy"), 100)]
        row += [g.stat(final("task_inference"), 100)] if inference else []
        row += [x.cell(g.stat(x.get), len(g.runs)) for x in experiment.extras]
        rows.append(row + [bytes_cell(g)])
    return Table(experiment.id, experiment.title, "", columns, rows)


def bytes_cell(group: Group) -> str:
    encodings = sorted({e for r in group.runs for e in r.bytes()})
    cells = []
    for encoding in encodings:
        stat = group.stat(lambda r, e=encoding: r.bytes().get(e))
        cells.append(f"{encoding} {human_bytes(stat.mean, stat.std)}")
    return "; ".join(cells) or "—"


def matches(experiment: Experiment, groups: list[Group]) -> list[tuple[Reference, Group, float]]:
    """Each reference with an accuracy and each group in its setting, with the gap (points)."""
    out = []
    for ref in experiment.references:
        for g in groups:
            if ref.matches(g):
                out.append((ref, g, g.stat(final("accuracy"), 100).mean - ref.accuracy))
    return out


def references_table(experiment: Experiment, groups: list[Group]) -> Table:
    columns = [Column("reference"), Column("value"), Column("source"), Column("clbench group"),
               Column("clbench (%)", "pct"), Column("gap (points)")]
    found = matches(experiment, groups)
    names = labels(groups)
    rows = []
    for ref in experiment.references:
        head = [ref.label + (f" [{ref.id}]" if ref.id else ""), ref.shown(), ref.source]
        mine = [(g, gap) for r, g, gap in found if r is ref]
        for i, (g, gap) in enumerate(mine):
            shown = head if i == 0 else ["″"] * len(head)  # the same reference as above
            rows.append(shown + [names[id(g)], g.stat(final("accuracy"), 100), f"{gap:+.2f}"])
        if not mine:
            rows.append(head + [_unmatched(ref, groups), None, "—"])
    return Table(f"{experiment.id}-references", "Reference", "", columns, rows)


def _unmatched(ref: Reference, groups: list[Group]) -> str:
    if ref.accuracy is None or ref.setting is None:
        return "— (compare by hand)"
    return "no group in this setting yet" if groups else "not run yet"

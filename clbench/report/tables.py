"""The report's tables: one row per group, rendered as Markdown (human units) and CSV (numbers).

Accuracies are percentages; a ``Stat`` cell is the mean ± sample standard deviation over the
group's seeds, and a CSV holds its mean and std as two columns.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from clbench.report.published import Published, matching
from clbench.report.runs import Group, Skipped, Stat

#: Checkpoints shown in the accuracy-by-tasks table, besides 10 and each group's last one:
#: every 50 up to 250 (Fig. 3), every 500 beyond (Fig. 4).
STEP_TO_250, STEP_BEYOND = 50, 500


@dataclass(frozen=True)
class Column:
    label: str
    kind: str = "text"  # text, int, pct, bytes, seconds, mb

    @property
    def csv(self) -> str:
        name = self.label.replace("%", "pct")
        return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


@dataclass
class Table:
    slug: str
    title: str
    note: str
    columns: list[Column]
    rows: list[list[Any]]
    keys: list[tuple[str, str]] | None = None  # CSV only: each row's config key and variant
    bold: int | None = None  # a row whose first number column is shown in bold

    def markdown(self) -> str:
        head = "| " + " | ".join(c.label for c in self.columns) + " |"
        rule = "|" + "|".join("---" if c.kind == "text" else "---:" for c in self.columns) + "|"
        body = []
        for i, row in enumerate(self.rows):
            cells = [_cell(fmt(v, c.kind)) for v, c in zip(row, self.columns)]
            if i == self.bold:
                first = next(k for k, c in enumerate(self.columns) if c.kind != "text")
                cells[first] = f"**{cells[first]}**"
            body.append("| " + " | ".join(cells) + " |")
        return "\n".join([head, rule, *body])

    def csv_rows(self) -> list[list[str]]:
        """Header and rows; a column holding stats becomes ``<name>_mean`` and ``<name>_std``."""
        stats = [any(isinstance(row[i], Stat) for row in self.rows)
                 for i in range(len(self.columns))]
        header: list[str] = []
        for c, s in zip(self.columns, stats):
            header += [f"{c.csv}_mean", f"{c.csv}_std"] if s else [c.csv]
        keyed = self.keys is not None
        out = [["config", "variant", *header] if keyed else header]
        for i, row in enumerate(self.rows):
            line: list[str] = list(self.keys[i]) if keyed else []
            for value, s in zip(row, stats):
                if isinstance(value, Stat):
                    line += [number(value.mean), number(value.std)]
                else:
                    line += [number(value), ""] if s else [number(value)]
            out.append(line)
        return out


def number(value: Any) -> str:
    """A CSV cell: floats to six decimals, None empty."""
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(round(value, 6))
    return str(value)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def human_bytes(value: float | None, std: float | None = None, digits: int | None = None) -> str:
    """Decimal units, like the paper's "195.18 M"; ``digits`` significant digits instead of two
    decimals."""
    if value is None:
        return "—"
    scale, unit = 1.0, "B"
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(value) < 1000 * scale or unit == "TB":
            break
        scale *= 1000
    spec = f".{digits}g" if digits else ".0f" if unit == "B" else ".2f"
    text = f"{value / scale:{spec}}"
    if std:
        text += f" ± {std / scale:{spec}}"
    return f"{text} {unit}"


DIGITS = {"pct": 2, "seconds": 1, "mb": 1}


def fmt(value: Any, kind: str) -> str:
    """One cell for Markdown."""
    if value is None or (isinstance(value, Stat) and value.mean is None):
        return "—"
    if kind == "bytes":
        return human_bytes(value.mean, value.std) if isinstance(value, Stat) else human_bytes(
            value)
    if kind in DIGITS:
        d = DIGITS[kind]
        if isinstance(value, Stat):
            return f"{value.mean:.{d}f}" + (f" ± {value.std:.{d}f}" if value.std is not None
                                             else "")
        return f"{value:.{d}f}"
    return str(value)


# ------------------------------------------------------------------ the tables


def final(name: str) -> Any:
    return lambda run: run.final[name]


def published_cell(values: list[Published]) -> str:
    parts = []
    for p in values:
        numbers = [f"{p.accuracy:.2f} %" if p.accuracy is not None else "",
                   human_bytes(p.bytes) if p.bytes is not None else ""]
        parts.append(" · ".join(n for n in numbers if n) + f" [{p.id}]")
    return "; ".join(parts) or None


def accuracy_bytes(groups: list[Group], published: list[Published]) -> Table:
    encodings = sorted({e for g in groups for r in g.runs for e in r.bytes()})
    paper = [published_cell(matching(published, g)) for g in groups]
    columns = [Column("group"), Column("n", "int"), Column("seeds"), Column("tasks", "int"),
               Column("accuracy (%)", "pct"),
               *(Column(f"bytes ({e})", "bytes") for e in encodings)]
    if any(paper):
        columns.append(Column("published"))
    rows = []
    for g, p in zip(groups, paper):
        row = [g.name, len(g.runs), g.seeds, g.config["tasks"],
               g.stat(final("accuracy"), 100),
               *(g.stat(lambda r, e=e: r.bytes().get(e)) for e in encodings)]
        rows.append(row + [p] if any(paper) else row)
    formulas = sorted({(e, v["formula"]) for g in groups for r in g.runs
                       for e, v in (r.record["checkpoints"][-1].get("bytes") or {}).items()})
    note = ("Mean accuracy over all tasks after the last task, in the scenario's rule, and what "
            "the method stores then, per encoding (decimal units: 1 MB = 10^6 bytes). "
            + ("Encodings: " + "; ".join(f"{e} = `{f}`" for e, f in formulas) + ". "
               if formulas else "")
            + ("Published values matching a group's setting are in the last column." if any(
                paper) else ""))
    return Table("accuracy-bytes", "Accuracy and bytes", note.strip(), columns, rows, _keys(groups))


def _keys(groups: list[Group]) -> list[tuple[str, str]]:
    return [(g.key, g.variant) for g in groups]


def milestone(tasks: int) -> bool:
    """Whether a table shows the numbers after ``tasks``: 10, every 50 up to 250, every 500
    beyond."""
    return tasks == 10 or (tasks % STEP_TO_250 == 0 and tasks <= 250) or tasks % STEP_BEYOND == 0


def milestones(groups: list[Group]) -> list[int]:
    """The :func:`milestone` points of the groups' curves and each group's last checkpoint."""
    points = set()
    for g in groups:
        points |= {t for t in g.curve("accuracy") if milestone(t)}
        points.add(max(g.curve("accuracy")))
    return sorted(points)


def accuracy_by_tasks(groups: list[Group], names: dict[int, str] | None = None) -> Table:
    points = milestones(groups)
    columns = [Column("group"), Column("n", "int"),
               *(Column(f"after {t}", "pct") for t in points)]
    rows = []
    for g in groups:
        curve = g.curve("accuracy")
        rows.append([names[id(g)] if names else g.name, len(g.runs),
                     *(curve.get(t) for t in points)])
    note = ("Mean accuracy (%) over the tasks learned so far, in the scenario's rule, after 10, "
            "50, 100, … tasks (as Fig. 3 and 4 of the paper) and after each group's last task; "
            "— where a group has no checkpoint.")
    return Table("accuracy-by-tasks", "Accuracy after N tasks", note, columns, rows, _keys(groups))


def inference(groups: list[Group]) -> Table:
    columns = [Column("group"), Column("n", "int"), Column("accuracy (%)", "pct"),
               Column("task inference (%)", "pct"), Column("oracle accuracy (%)", "pct")]
    rows = [[g.name, len(g.runs), g.stat(final("accuracy"), 100),
             g.stat(final("task_inference"), 100), g.stat(final("oracle_accuracy"), 100)]
            for g in groups]
    note = ("After the last task: the scenario's accuracy, the task-inference accuracy (share of "
            "correct decisions; — where the task is given or the method infers none) and the "
            "oracle accuracy (the true task given) of the same run.")
    return Table("task-inference", "Task inference and the oracle", note, columns, rows,
                 _keys(groups))


def forgetting(groups: list[Group]) -> Table:
    columns = [Column("group"), Column("n", "int"), Column("accuracy (%)", "pct"),
               Column("forgetting (pp)", "pct"), Column("backward transfer (pp)", "pct")]
    rows = [[g.name, len(g.runs), g.stat(final("accuracy"), 100),
             g.stat(final("forgetting"), 100), g.stat(final("backward_transfer"), 100)]
            for g in groups]
    note = ("From the oracle matrix: forgetting is the mean over all tasks but the last of the "
            "best earlier accuracy minus the final one; backward transfer the mean of the final "
            "accuracy minus the accuracy right after learning (the diagonal). Percentage points.")
    return Table("forgetting", "Forgetting and backward transfer", note, columns, rows,
                 _keys(groups))


def cost(groups: list[Group]) -> Table:
    columns = [Column("run"), Column("n", "int"), Column("threads", "int"), Column("device"),
               Column("total (s)", "seconds"), Column("train (s)", "seconds"),
               Column("eval (s)", "seconds"), Column("train per task (s)", "seconds"),
               Column("peak memory (MB)", "mb")]
    rows, seen = [], set()
    for g in groups:
        if g.key in seen:
            continue
        seen.add(g.key)
        rows.append([
            g.run_name, len(g.runs), g.config["threads"], g.config["device"],
            g.stat(timing("total_s")), g.stat(timing("train_s")), g.stat(timing("eval_s")),
            g.stat(lambda r: _mean(r.record["timing"].get("train_s_per_task"))),
            g.stat(lambda r: r.record.get("peak_memory_mb"))])
    note = ("Wall time of each run (variants evaluated in one run share it) and the process's "
            "peak memory.")
    return Table("cost", "Wall time and peak memory", note, columns, rows,
                 [(key, "") for key in dict.fromkeys(g.key for g in groups)])


def timing(key: str) -> Any:
    return lambda run: run.record["timing"].get(key)


def _mean(values: list[float] | None) -> float | None:
    return sum(values) / len(values) if values else None


def published_table(groups: list[Group], published: list[Published]) -> Table:
    columns = [Column("id"), Column("paper label"), Column("setting"), Column("accuracy (%)"),
               Column("bytes", "bytes"), Column("source"), Column("clbench group"),
               Column("n", "int"), Column("clbench accuracy (%)", "pct")]
    rows = []
    for p in published:
        accuracy = "—" if p.accuracy is None else f"{p.accuracy:.2f}" + (
            f" ({p.range[0]:.2f}–{p.range[1]:.2f})" if p.range else "")
        label = p.label + (f" ({p.note})" if p.note else "")
        setting = ("reference only" if p.setting is None
                   else ", ".join(f"{k}={v}" for k, v in p.setting.items()))
        head = [p.id, label, setting, accuracy, p.bytes, p.source]
        found = [g for g in groups if p.matches(g)]
        for g in found:
            rows.append(head + [g.name, len(g.runs), g.stat(final("accuracy"), 100)])
        if not found:
            rows.append(head + ["no matching runs", None, None])
    note = ("Values from the SupSup paper and the official implementation "
            "(`clbench/report/published.yaml`), each with its source and whether it was read "
            "exactly or off a plot, beside the clbench groups run in the same setting "
            "(method, scenario, benchmark, dataset, tasks and, where given, model and params).")
    return Table("published", "Published numbers", note, columns, rows)


def stream_note(groups: list[Group]) -> str:
    """The sentence saying that runs of one config were kept apart by stream ("" if none)."""
    apart = sorted({g.name or g.key for g in groups if g.stream})
    if not apart:
        return ""
    return (f"{len(apart)} group{'s' * (len(apart) > 1)} (named `stream <identity>`) hold runs "
            "of one config that saw different streams for the same data seed (their records' "
            "`stream.identity`; `unrecorded`: a record from before identities were kept): "
            "they are shown apart and never averaged together.")


def groups_table(groups: list[Group]) -> Table:
    columns = [Column("group"), Column("config key"), Column("seeds"), Column("tags"),
               Column("records")]
    rows = [[g.name, g.key, g.seeds, g.tags or "—", "; ".join(r.path for r in g.runs)]
            for g in groups]
    note = ("Each group is the runs whose configs are equal but for the seed and the data seed "
            "(`RunConfig.group_key`); tags name the experiments the runs belong to.")
    apart = stream_note(groups)
    note += f" {apart}" if apart else ""
    return Table("groups", "Groups and their records", note, columns, rows)


def skipped_table(skipped: list[Skipped]) -> Table:
    rows = [[s.path, s.reason] for s in skipped]
    return Table("skipped", "Skipped records", "Records that are corrupt, half-written, failed "
                 "or malformed; paths are relative to the results folder.",
                 [Column("record"), Column("reason")], rows)


def build(groups: list[Group], published: list[Published], skipped: list[Skipped]) -> list[Table]:
    """Every table of the report, in page order."""
    return [accuracy_bytes(groups, published), accuracy_by_tasks(groups), inference(groups),
            forgetting(groups), cost(groups), published_table(groups, published),
            groups_table(groups), skipped_table(skipped)]


# ------------------------------------------------------------------ leaderboards


def duration(seconds: float | None) -> str:
    """Seconds as a reader says them: 45 s, 12.5 min, 1.52 h."""
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 6000 else f"{seconds / 3600:.2f} h"


def bytes_cell(group: Group) -> str:
    """The group's smallest encoding: "742.00 kB (bits)"."""
    sizes = [(e, group.stat(lambda r, e=e: r.bytes().get(e)))
             for e in sorted({e for r in group.runs for e in r.bytes()})]
    sizes = [(e, s) for e, s in sizes if s.mean is not None]
    if not sizes:
        return "—"
    encoding, stat = min(sizes, key=lambda item: item[1].mean)
    return f"{human_bytes(stat.mean)} ({encoding})"


def board_rows(groups: list[Group], preferred: set[str]) -> tuple[list[Group], dict[int, int]]:
    """A group per method, scenario and variant: the config with the most seeds, then one
    that ``preferred`` tags name, then the most accurate; with how many configs it stands
    for. Ordered by accuracy, best first."""
    by_row: dict[tuple, list[Group]] = {}
    for g in groups:
        c = g.config
        by_row.setdefault((c["method"], c["scenario"], c.get("label_view"), g.variant),
                          []).append(g)
    chosen, others = [], {}
    for members in by_row.values():
        best = max(members, key=lambda g: (len(g.runs), bool(preferred & set(g.tags.split(
            ", "))), g.stat(final("accuracy"), 100).mean or 0.0))
        chosen.append(best)
        others[id(best)] = len(members) - 1
    chosen.sort(key=lambda g: -(g.stat(final("accuracy"), 100).mean or 0.0))
    return chosen, others


def leaderboard(slug: str, groups: list[Group], names: dict[int, str],
                others: dict[int, int], scenarios: dict[int, str]) -> Table:
    """The compact board of a setting; the leader's accuracy in bold when it leads the next
    by more than its own std."""
    columns = [Column("method"), Column("scenario"), Column("accuracy (%)", "pct"),
               Column("n", "int"), Column("task inference (%)", "pct"), Column("bytes"),
               Column("train time"), Column("forgetting (points)", "pct")]
    rows: list[list[Any]] = []
    accuracy = [g.stat(final("accuracy"), 100) for g in groups]
    for g, acc in zip(groups, accuracy):
        more = others.get(id(g), 0)
        label = names[id(g)] + (f" (+{more} other config{'s' * (more > 1)} below)"
                                if more else "")
        rows.append([label, scenarios[id(g)], acc, len(g.runs),
                     g.stat(final("task_inference"), 100), bytes_cell(g),
                     duration(g.stat(timing("train_s")).mean),
                     g.stat(final("forgetting"), 100)])
    table = Table(slug, "Leaderboard", "", columns, rows, _keys(groups))
    if len(accuracy) > 1 and accuracy[0].std is not None and (
            accuracy[0].mean - accuracy[1].mean > accuracy[0].std):
        table.bold = 0
    return table


def details(slug: str, groups: list[Group], names: dict[int, str],
            scenarios: dict[int, str]) -> Table:
    """Every config of a setting: final metrics, bytes per encoding, time and memory."""
    columns = [Column("config"), Column("scenario"), Column("n", "int"), Column("seeds"),
               Column("accuracy (%)", "pct"), Column("task given (%)", "pct"),
               Column("task inference (%)", "pct"), Column("forgetting (points)", "pct"),
               Column("backward transfer (points)", "pct"), Column("bytes"),
               Column("total time"), Column("peak memory (MB)", "mb")]
    rows = []
    for g in groups:
        sizes = "; ".join(f"{e} {human_bytes(s.mean, s.std)}" for e in sorted(
            {e for r in g.runs for e in r.bytes()}) for s in [g.stat(
                lambda r, e=e: r.bytes().get(e))]) or "—"
        rows.append([names[id(g)], scenarios[id(g)], len(g.runs), g.seeds,
                     g.stat(final("accuracy"), 100), g.stat(final("oracle_accuracy"), 100),
                     g.stat(final("task_inference"), 100), g.stat(final("forgetting"), 100),
                     g.stat(final("backward_transfer"), 100), sizes,
                     duration(g.stat(timing("total_s")).mean),
                     g.stat(lambda r: r.record.get("peak_memory_mb"))])
    return Table(slug, "All configs", "", columns, rows, _keys(groups))

"""Write the report folder: ``README.md`` (settings with leaderboards and figures),
``tables/*.csv``, ``plots/*.png|svg|csv`` (each figure with its plotted numbers), and
``REPRODUCTION.md`` (the paper's figures per experiment) when there is a ``reproduce.yaml``.
The report owns only the files it lists in its manifest, and removes those of an earlier
report that it no longer writes; the repository's own report (into ``reports/`` beside
``reproduce.yaml``) also refreshes the headline block of the README there."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from clbench.atomic import write_atomic
from clbench.errors import ClbenchError
from clbench.report import figures, published, readme, reproduce, tables
from clbench.report.figures import Chart, FigureSpec
from clbench.report.runs import Collection, Filters, collect

MANIFEST = ".clbench-report"
OWNED = ("README.md", "tables/", "plots/", reproduce.PAGE)  # where a manifest entry may point


def write_report(results: str | Path | None, out: str | Path = "reports",
                 filters: Filters = Filters(), reproduce_file: str | Path | None = None) -> str:
    """Build the report of the records under ``results`` into ``out``; returns a summary.

    ``reproduce_file`` (default: ``reproduce.yaml`` beside the results folder, if there is one)
    is rendered as ``REPRODUCTION.md`` from all records, whatever the filters."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ClbenchError(f"--out {out} is a file: point it at a folder")
    collection = collect(results, filters)
    if not collection.groups and (filters != Filters() or not collection.skipped):
        raise ClbenchError(f"no records in {collection.root} match {filters.describe()}: "
                           + available(collection))
    values = published.load()
    source = reproduce.find(collection.root, reproduce_file)
    experiments = reproduce.load(source, values) if source else []
    everything = collection if filters == Filters() or not source else collect(results)
    methods = sorted({g.config["method"] for g in everything.groups})
    headline = [e.tag for e in experiments if e.headline]
    preferred = {e.tag for e in experiments}
    boards = readme.settings(collection.groups, headline, preferred, methods)
    all_tables = {t.slug: t for t in tables.build(collection.groups, values,
                                                  collection.skipped)}
    written = []
    for table in all_tables.values():
        written.append(write_text(out, f"tables/{table.slug}.csv", csv_text(table.csv_rows())))
    if boards:
        written.append(write_text(out, "tables/leaderboard.csv",
                                  csv_text(readme.leaderboards_csv(boards))))
    heatmaps: list[tuple[str, str]] = []
    quiet: list[str] = []
    charts: dict[str, list[tuple[FigureSpec, Chart | None]]] = {}
    if collection.groups or experiments:
        from clbench.report import draw  # matplotlib and seaborn are slow to import

        for board in boards:
            written += _chart(draw, board.chart, "tasks", out)
        forgetting, others = readme.forgetting_groups(collection.groups)
        titles = {id(g): f"{b.title}: {b.full[id(g)]}" for b in boards for g in b.groups}
        full = {id(g): (b.full[id(g)], b.title) for b in boards for g in b.groups}
        for i, group in enumerate(forgetting, 1):
            label, setting = full[id(group)]
            stem = f"heatmap-{i:02d}-{draw.slug(label)}"
            draw.heatmap(group, label, setting, stem, out / "plots")
            written += [f"plots/{stem}.{ext}" for ext in ("png", "svg")]
            heatmaps.append((stem, titles[id(group)]))
        quiet = [titles[id(g)] for g in others]
        for experiment in experiments:
            found = reproduce.find_runs(experiment, everything)
            refs = reproduce.chart_refs(experiment)
            charts[experiment.id] = []
            for spec in experiment.figures:
                stem = f"{experiment.id}-{spec.id}"
                chart = figures.experiment_chart(spec, stem, found.groups, methods, refs)
                if chart is not None:
                    written += _chart(draw, chart, spec.kind, out)
                charts[experiment.id].append((spec, chart))
    written.append(write_text(out, "README.md", readme.render(
        collection, filters, boards, all_tables, heatmaps, quiet, bool(source))))
    updated = None
    if source:
        written.append(write_text(out, reproduce.PAGE, reproduce.render(
            experiments, everything, source.name, charts)))
        updated = sync_readme_headline(source, out, experiments, everything)
    clean(out, written)
    runs = sum(len(g.runs) for g in collection.groups)
    lines = [f"report: {runs} runs in {len(collection.groups)} groups, "
             f"{len(collection.skipped)} records skipped -> {out / 'README.md'}"]
    if source:
        lines.append(f"reproduction: {len(experiments)} experiments from {source} -> "
                     f"{out / reproduce.PAGE}")
        if updated:
            lines.append(f"headline table updated in {updated}")
    lines += [f"skipped {collection.root / s.path}: {s.reason}" for s in collection.skipped]
    return "\n".join(lines)


def _chart(draw: Any, chart: Chart, kind: str, out: Path) -> list[str]:
    """Draw a chart and write its plotted numbers beside it; the files written."""
    draw.draw(chart, kind, out / "plots")
    return [write_text(out, f"plots/{chart.stem}.csv", csv_text(
        [[tables.number(v) for v in row] for row in chart.csv_rows()])),
        *(f"plots/{chart.stem}.{ext}" for ext in ("png", "svg"))]


def sync_readme_headline(source: Path, out: Path, experiments: list[reproduce.Experiment],
                         collection: Collection) -> Path | None:
    """Refresh the headline block of the README beside ``source`` when this is that
    repository's own report (``out`` is the ``reports`` folder beside it); return the README's
    path if it changed. Other reports (another ``--out``) never touch it."""
    readme_path = source.parent / "README.md"
    if out.resolve() != (source.parent / "reports").resolve() or not readme_path.is_file():
        return None
    table = reproduce.headline(experiments, collection)
    text = readme_path.read_text(encoding="utf-8")
    new = reproduce.with_headline(text, table) if table else None
    if new is None or new == text:
        return None
    write_atomic(readme_path, lambda handle: handle.write(new))
    return readme_path


def available(collection: Collection) -> str:
    parts = [f"{key}s: {', '.join(sorted(values))}"
             for key, values in collection.available.items() if values]
    return "; ".join(parts) or "the records have no readable configs"


def write_text(out: Path, name: str, text: str) -> str:
    """Write ``text`` atomically as ``out/name`` (a reader never sees half a report file);
    returns ``name`` for the manifest."""
    write_atomic(out / name, lambda handle: handle.write(text))
    return name


def csv_text(rows: list[list[str]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue()


def clean(out: Path, written: list[str]) -> None:
    """Delete files the previous report wrote and this one did not; record the new list."""
    manifest = out / MANIFEST
    old = manifest.read_text().splitlines() if manifest.is_file() else []
    for name in sorted(set(old) - set(written)):
        if name.startswith(OWNED) and ".." not in name:
            (out / name).unlink(missing_ok=True)
    write_text(out, MANIFEST, "".join(f"{name}\n" for name in sorted(written)))

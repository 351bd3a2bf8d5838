"""Write the report folder: ``README.md`` (tables and plots), ``tables/*.csv``,
``plots/*.png|svg``, and ``REPRODUCTION.md`` when there is a ``reproduce.yaml``. The report owns
only the files it lists in its manifest, and removes those of an earlier report that it no
longer writes; the repository's own report (into ``reports/`` beside ``reproduce.yaml``) also
refreshes the headline block of the README there."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from clbench.errors import ClbenchError
from clbench.report import published, reproduce, tables
from clbench.report.runs import Collection, Filters, collect
from clbench.store import write_atomic

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
    all_tables = tables.build(collection.groups, values, collection.skipped)
    written = []
    for table in all_tables:
        path = f"tables/{table.slug}.csv"
        write_text(out / path, csv_text(table.csv_rows()))
        written.append(path)
    figures = []
    if collection.groups:
        from clbench.report import plots  # matplotlib and seaborn are slow to import

        figures = plots.render(collection.groups, values, out / "plots")
    written += [f"plots/{p.stem}.{ext}" for p in figures for ext in ("png", "svg")]
    write_text(out / "README.md", readme(collection, filters, all_tables, figures))
    written.append("README.md")
    updated = None
    if source:
        everything = collection if filters == Filters() else collect(results)
        write_text(out / reproduce.PAGE, reproduce.render(experiments, everything, source.name))
        written.append(reproduce.PAGE)
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


def write_text(path: Path, text: str) -> None:
    """Write ``text`` atomically (a reader never sees half a report file)."""
    write_atomic(path, lambda handle: handle.write(text))


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
    write_text(manifest, "".join(f"{name}\n" for name in sorted(written)))


def readme(collection: Collection, filters: Filters, all_tables: list[tables.Table],
           figures: list[Any]) -> str:
    by_slug = {t.slug: t for t in all_tables}
    runs = sum(len(g.runs) for g in collection.groups)
    parts = [
        "# clbench report",
        "",
        f"Generated by `clbench report` from the records in `{collection.root}` (filters: "
        f"{filters.describe()}); regenerate it rather than editing it. "
        f"{collection.records} records read: {runs} runs (a run per record and variant) in "
        f"{len(collection.groups)} groups, {len(collection.skipped)} skipped.",
        "",
        "Accuracies are percentages. Cells are mean ± sample standard deviation over a "
        "group's seeds (no ± with one seed); `n` is the number of seeds.",
    ]

    def section(slug: str) -> None:
        table = by_slug[slug]
        parts.extend(["", f"## {table.title}", "", table.note, ""])
        parts.append(table.markdown() if table.rows else "_None._")
        parts.extend(["", f"CSV: [tables/{slug}.csv](tables/{slug}.csv)"])

    if collection.groups:
        for slug in ("accuracy-bytes", "accuracy-by-tasks", "task-inference", "forgetting",
                     "cost"):
            section(slug)
        parts.extend(["", "## Plots"])
        for plot in figures:
            parts.extend(["", f"### {plot.title}", "", plot.caption, "",
                          f"![{plot.title}](plots/{plot.stem}.png)", "",
                          f"[SVG](plots/{plot.stem}.svg)"])
        section("published")
        section("groups")
    section("skipped")
    return "\n".join(parts) + "\n"

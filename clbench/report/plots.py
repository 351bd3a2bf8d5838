"""The report's plots, one seaborn style, drawn on matplotlib's Agg canvas (no pyplot).

Line plots have one panel per setting (scenario · benchmark · dataset) and one colour per
method across every plot; bands are ± one standard deviation over seeds. Files are byte-stable:
no dates or versions in the metadata, and a fixed SVG hash salt.
"""

from __future__ import annotations

import math
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

from clbench.report.published import Published
from clbench.report.runs import Group, Stat
from clbench.report.tables import human_bytes
from clbench.results import summarize

DPI = 100
PANEL = (5.6, 4.4)  # inches per panel of a line plot
HEATMAP = (6.4, 5.2)
ANNOTATE_UP_TO = 12  # tasks (and checkpoints) up to which heatmap cells show their numbers
MARKERS_UP_TO = 25  # points per line up to which lines show markers
LEGEND_WIDTH = 60  # characters per legend line
LEGEND_LINE = 0.21  # inches per legend text line (font and spacing)
MIN_SPAN = 5.0  # percentage points: the least a percentage axis shows
MARKERS = ("o", "s", "^", "D", "v", "P", "X")
ENCODING_MARKERS = {"bits": "o", "sparse": "s", "fp32": "^"}
STYLE = {
    **sns.axes_style("whitegrid"),
    **sns.plotting_context("notebook", font_scale=0.8),
    "font.family": "DejaVu Sans",
    "svg.hashsalt": "clbench-report",
    "figure.dpi": DPI,
    "savefig.dpi": DPI,
}
PUBLISHED = {"marker": "*", "s": 220, "facecolors": "none", "linewidths": 1.4, "zorder": 5}


@dataclass(frozen=True)
class Plot:
    stem: str  # file name under plots/, without .png or .svg
    title: str
    caption: str
    size: tuple[int, int]  # width, height in pixels


def palette(groups: list[Group]) -> dict[str, dict]:
    """One colour and marker per line label (a method with its variant and model), in group
    order; variants after a run's first are dashed, so that equal curves stay visible."""
    labels: dict[str, str] = {}
    for g in groups:
        labels.setdefault(g.short, "-" if g.variant == g.runs[0].record["variants"][0] else "--")
    for g in groups:
        if (g.runs[0].record.get("extras") or {}).get("masks_allocated"):
            labels.setdefault(g.run_short, "-")
    n = len(labels)
    # without grey (the reference lines' colour) and the yellows, faint on white
    colors = ([c for i, c in enumerate(sns.color_palette("colorblind")) if i not in (7, 8)]
              if n <= 8 else [c for i, c in enumerate(sns.color_palette("tab20"))
                              if i not in (14, 15, 17)] if n <= 17
              else sns.color_palette("husl", n))
    return {label: {"color": color, "ls": ls, "marker": MARKERS[i % len(MARKERS)]}
            for i, ((label, ls), color) in enumerate(zip(labels.items(), colors))}


def save(fig: Figure, folder: Path, stem: str) -> tuple[int, int]:
    """PNG and SVG of ``fig``, without dates or versions; returns the size in pixels."""
    folder.mkdir(parents=True, exist_ok=True)
    fig.savefig(folder / f"{stem}.png", metadata={"Software": None})
    fig.set_layout_engine("none")  # keep the layout the PNG got, instead of computing it again
    fig.savefig(folder / f"{stem}.svg", metadata={"Date": None, "Creator": None})
    width, height = fig.get_size_inches() * DPI
    return round(width), round(height)


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60]


def panels(groups: list[Group]) -> tuple[Figure, list[tuple[object, list[Group]]]]:
    """A figure with one panel per setting, two panels a row."""
    settings = list(dict.fromkeys(g.setting for g in groups))
    cols = 1 if len(settings) == 1 else 2
    rows = math.ceil(len(settings) / cols)
    fig = Figure(figsize=(PANEL[0] * cols, PANEL[1] * rows), layout="constrained")
    axes = list(fig.subplots(rows, cols, squeeze=False).flat)
    out = []
    for ax, setting in zip(axes, settings):
        ax.set_title(setting)
        out.append((ax, [g for g in groups if g.setting == setting]))
    for ax in axes[len(settings):]:
        ax.set_visible(False)
    return fig, out


def percent_axis(ax: object) -> None:
    """At least ``MIN_SPAN`` points on the y axis, so that small differences do not look big;
    never far beyond 0 or 100."""
    low, high = ax.get_ylim()
    if high - low < MIN_SPAN:
        middle = (low + high) / 2
        high = min(middle + MIN_SPAN / 2, 101.0)
        low = max(high - MIN_SPAN, -1.0)
        ax.set_ylim(low, low + MIN_SPAN)


def task_axis(ax: object, last: float) -> None:
    """Task counts from the start: whole tasks when there are few."""
    ax.set_xlim((0.5, last + 0.5) if last <= 20 else (0, last * 1.04))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def legend(fig: Figure) -> None:
    """One legend below all panels, each label once."""
    entries: dict[str, object] = {}
    for ax in fig.axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    if entries:
        wide = fig.get_size_inches()[0] > PANEL[0]
        labels = ["\n".join(textwrap.wrap(label, LEGEND_WIDTH)) for label in entries]
        ncols = 2 if wide and len(entries) > 1 else 1
        fig.legend(entries.values(), labels, loc="outside lower center", ncols=ncols,
                   frameon=False)
        # the legend gets its own height, so the panels keep theirs however many groups
        lines = math.ceil(sum(label.count("\n") + 1 for label in labels) / ncols)
        width, height = fig.get_size_inches()
        fig.set_size_inches(width, height + LEGEND_LINE * lines)


def line(ax: object, curve: dict[int, Stat], style: dict, label: str) -> None:
    """Mean over seeds with a band of ± one std."""
    xs = np.array(list(curve), dtype=float)
    mean = np.array([s.mean for s in curve.values()], dtype=float)
    std = np.array([s.std or 0.0 for s in curve.values()], dtype=float)
    ax.plot(xs, mean, color=style["color"], ls=style["ls"], label=label, lw=1.8,
            marker=style["marker"] if len(xs) <= MARKERS_UP_TO else None, ms=5)
    if std.any():
        ax.fill_between(xs, mean - std, mean + std, color=style["color"], alpha=0.2, lw=0)


def published_points(ax: object, members: list[Group], published: list[Published],
                     colors: dict, x: str) -> None:
    """Published values matching a group of this panel, as star outlines in its colour, at the
    group's number of tasks or at the published bytes."""
    for p in published:
        hits = [g for g in members if p.matches(g)]
        if not hits or p.accuracy is None:
            continue
        where = hits[0].config["tasks"] if x == "tasks" else p.bytes
        if where is not None:
            ax.scatter([where], [p.accuracy], label=f"published: {p.label}",
                       edgecolors=[colors[hits[0].short]["color"]], **PUBLISHED)


def curve_plot(groups: list[Group], published: list[Published], colors: dict, kind: str,
               ylabel: str, folder: Path, stem: str, title: str, caption: str) -> Plot | None:
    members = [g for g in groups if g.curve(kind)]
    if not members:
        return None
    fig, axes = panels(members)
    for ax, panel in axes:
        for g in panel:
            line(ax, g.curve(kind), colors[g.short], g.short)
        if kind == "accuracy":
            published_points(ax, panel, published, colors, "tasks")
        ax.set(xlabel="tasks learned", ylabel=ylabel)
        task_axis(ax, ax.dataLim.x1)
        percent_axis(ax)
    legend(fig)
    return Plot(stem, title, caption, save(fig, folder, stem))


def bytes_plot(groups: list[Group], published: list[Published], colors: dict,
               folder: Path) -> Plot | None:
    members = [g for g in groups if g.runs[0].bytes()]
    if not members:
        return None
    fig, axes = panels(members)
    for ax, panel in axes:
        for g in panel:
            accuracy = g.stat(lambda r: r.final["accuracy"], 100)
            for encoding in sorted(g.runs[0].bytes()):
                size = g.stat(lambda r, e=encoding: r.bytes().get(e))
                ax.errorbar([size.mean], [accuracy.mean], xerr=[size.std or 0.0],
                            yerr=[accuracy.std or 0.0], color=colors[g.short]["color"],
                            fmt=ENCODING_MARKERS.get(encoding, "D"), ms=7, capsize=3,
                            mfc="none" if colors[g.short]["ls"] == "--" else None,
                            label=f"{g.short} ({encoding})")
        published_points(ax, panel, published, colors, "bytes")
        ax.set_xscale("log")
        low, high = ax.dataLim.x0, ax.dataLim.x1
        ax.set_xlim(low / 2, high * 2)
        decades = math.log10(high / low) + 0.6  # 1-2-5 ticks crowd a wide axis: decades only
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0) if decades < 4
                                              else (1.0,)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: human_bytes(v, digits=3)))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set(xlabel="bytes stored (log scale)", ylabel="accuracy (%)")
        percent_axis(ax)
    legend(fig)
    stem = "accuracy-vs-bytes"
    return Plot(stem, "Accuracy vs bytes", "Final accuracy against what the method stores, one "
                "marker per encoding (as Fig. 2 right of the paper); error bars ± one std over "
                "seeds; stars are published values.", save(fig, folder, stem))


def masks_plot(groups: list[Group], colors: dict, folder: Path) -> Plot | None:
    members = list({g.key: g for g in groups
                    if (g.runs[0].record.get("extras") or {}).get("masks_allocated")}.values())
    if not members:
        return None
    fig, axes = panels(members)
    for ax, panel in axes:
        top = max(len(r.record["extras"]["masks_allocated"]) for g in panel for r in g.runs)
        ax.plot([1, top], [1, top], color="black", ls=":", lw=1.2, label="one mask per task")
        for g in panel:
            series = [r.record["extras"]["masks_allocated"] for r in g.runs]
            length = max(len(s) for s in series)
            curve = {t + 1: summarize([s[t] if t < len(s) else None for s in series])
                     for t in range(length)}
            line(ax, curve, colors[g.run_short], g.run_short)
        ax.set(xlabel="tasks seen", ylabel="masks allocated")
        task_axis(ax, top)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    legend(fig)
    stem = "nns-masks"
    return Plot(stem, "NNs: masks allocated", "Masks allocated by the end of each task in the "
                "NNs scenario (the task is never given); the dotted line is one mask per task.",
                save(fig, folder, stem))


def heatmap(group: Group, index: int, folder: Path) -> Plot:
    """Accuracy of every task (columns) after each checkpoint (rows), first seed."""
    run = group.runs[0]
    points = run.record["checkpoints"]
    tasks = points[-1]["after_tasks"]
    matrix = np.full((len(points), tasks), np.nan)
    for i, point in enumerate(points):
        values = point["accuracy"][group.variant]
        matrix[i, :len(values)] = np.array(values) * 100
    fig = Figure(figsize=HEATMAP, layout="constrained")
    ax = fig.subplots()
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="white")
    image = ax.imshow(matrix, aspect="auto", cmap=cmap, vmin=0, vmax=100,
                      interpolation="nearest")
    fig.colorbar(image, ax=ax, label="accuracy (%)")
    if tasks <= ANNOTATE_UP_TO and len(points) <= ANNOTATE_UP_TO:
        digits = 1 if tasks <= 8 else 0
        for (i, j), value in np.ndenumerate(matrix):
            if not np.isnan(value):
                ax.text(j, i, f"{value:.{digits}f}", ha="center", va="center", fontsize=8,
                        color="white" if value < 50 else "black")
    ticks = [int(t) for t in MaxNLocator(integer=True, nbins=min(tasks, 10)).tick_values(1, tasks)
             if 0 <= t <= tasks]
    step = ticks[1] - ticks[0] if len(ticks) > 1 else 1
    ticks = [1 if t == 0 else t for t in ticks if t > 0 or step >= 5]  # task 1, not 0
    ax.set_xticks([t - 1 for t in ticks], [str(t) for t in ticks])
    step = max(1, math.ceil(len(points) / 12))
    ax.set_yticks(range(0, len(points), step),
                  [str(p["after_tasks"]) for p in points[::step]])
    ax.grid(False)
    ax.set(xlabel="task", ylabel="tasks learned")
    seed = run.config["seed"]
    title = "\n".join(textwrap.wrap(group.name, 62)) + f"\nfirst seed ({seed})"
    ax.set_title(title, fontsize="medium")
    stem = f"heatmap-{index:02d}-{slug(group.name)}"
    return Plot(stem, f"Task × task accuracy: {group.name}",
                f"Accuracy (%) of each task (columns) after each checkpoint (rows) in the "
                f"scenario's rule, first seed ({seed}).", save(fig, folder, stem))


def render(groups: list[Group], published: list[Published], folder: Path) -> list[Plot]:
    """Every plot of the report, written under ``folder``, in page order."""
    colors = palette(groups)
    with matplotlib.rc_context(STYLE):
        plots = [
            curve_plot(groups, published, colors, "accuracy", "accuracy (%)", folder,
                       "accuracy-vs-tasks", "Accuracy vs tasks learned",
                       "Mean accuracy over the tasks learned so far, in the scenario's rule "
                       "(bands: ± one std over seeds; stars: published values)."),
            bytes_plot(groups, published, colors, folder),
            curve_plot(groups, published, colors, "task_inference",
                       "task-inference accuracy (%)", folder, "task-inference-vs-tasks",
                       "Task inference vs tasks learned",
                       "Share of correct task decisions over the tasks learned so far."),
            masks_plot(groups, colors, folder),
            *(heatmap(g, i + 1, folder) for i, g in enumerate(groups)),
        ]
    return [p for p in plots if p is not None]

"""Charts and heatmaps onto matplotlib's Agg canvas (no pyplot), one seaborn style.

Accuracy axes stay within [0, 100]; bands and error bars are ± one standard deviation over
seeds; markers sit at the evaluation points measured. Files are byte-stable: no dates or
versions in the metadata, and a fixed SVG hash salt.
"""

from __future__ import annotations

import math
import re
import textwrap
from pathlib import Path

import matplotlib
import numpy as np
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

from clbench.report.figures import Chart, Panel, Series
from clbench.report.runs import Group
from clbench.report.tables import human_bytes

DPI = 100
PANEL = (6.0, 4.2)  # inches per panel
LEGEND = 3.0  # inches beside a panel for its own legend
HEATMAP = (6.4, 4.6)
MAX_HEIGHT = 2000  # pixels
ANNOTATE_UP_TO = 12  # tasks (and evaluation points) up to which heatmap cells show numbers
MARKERS_UP_TO = 25  # points per line up to which lines show markers
LABEL_WIDTH = 34  # characters per line of a legend entry or category label
MIN_SPAN = 5.0  # points: the least a percentage axis shows
STYLE = {
    **sns.axes_style("whitegrid"),
    **sns.plotting_context("notebook", font_scale=0.8),
    "font.family": "DejaVu Sans",
    "svg.hashsalt": "clbench-report",
    "figure.dpi": DPI,
    "savefig.dpi": DPI,
}
STAR = {"marker": "*", "s": 200, "color": "black", "zorder": 6, "clip_on": False}


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60]


def wrap(text: str, width: int = LABEL_WIDTH) -> str:
    return "\n".join(textwrap.wrap(text, width, break_long_words=False))


def save(fig: Figure, folder: Path, stem: str) -> tuple[int, int]:
    """PNG and SVG of ``fig``, without dates or versions; returns the size in pixels."""
    folder.mkdir(parents=True, exist_ok=True)
    fig.savefig(folder / f"{stem}.png", metadata={"Software": None})
    fig.set_layout_engine("none")  # keep the layout the PNG got, instead of computing it again
    fig.savefig(folder / f"{stem}.svg", metadata={"Date": None, "Creator": None})
    width, height = fig.get_size_inches() * DPI
    return round(width), round(height)


def _percent(ax: object, panel: Panel, values: list[float]) -> None:
    """A percentage axis: at least ``MIN_SPAN`` points, never beyond 0 or 100."""
    low, high = min(values), max(values)
    pad = max((high - low) * 0.08, 0.3)
    low, high = max(0.0, low - pad), min(100.0, high + pad)
    if high - low < MIN_SPAN:  # centred on the data, shifted back inside [0, 100]
        middle = (low + high) / 2
        low = min(max(0.0, middle - MIN_SPAN / 2), 100.0 - MIN_SPAN)
        high = low + MIN_SPAN
    set_limits = ax.set_xlim if panel.categorical else ax.set_ylim
    set_limits(low, high)
    panel.limits = (low, high)


def _tasks_axis(ax: object, last: float) -> None:
    ax.set_xlim((0.5, last + 0.5) if last <= 20 else (0, last * 1.04))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=8, steps=[1, 2, 5, 10]))


def _bytes_axis(ax: object, low: float, high: float) -> None:
    ax.set_xscale("log")
    ax.set_xlim(low / 2.5, high * 2.5)
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0,) if high / low > 300
                                          else (1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: human_bytes(v, digits=3)))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _spread(s: Series, percent: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Means, and the low and high ends of ± one std (within [0, 100] for percentages)."""
    mean = np.array([p.y.mean for p in s.points], dtype=float)
    std = np.array([p.y.std or 0.0 for p in s.points], dtype=float)
    low, high = mean - std, mean + std
    if percent:
        low, high = np.clip(low, 0.0, 100.0), np.clip(high, 0.0, 100.0)
    return mean, low, high


def _line(ax: object, s: Series, percent: bool) -> None:
    xs = np.array([p.x for p in s.points], dtype=float)
    mean, low, high = _spread(s, percent)
    marker = s.look.marker if len(xs) <= MARKERS_UP_TO else None
    ax.plot(xs, mean, color=s.look.color, ls=s.look.ls, lw=s.look.width, marker=marker,
            ms=5 if len(xs) > 2 else 7,
            label=wrap(s.label), clip_on=False, zorder=s.look.layer)
    if (high - low).any():
        if len(xs) > 1:
            ax.fill_between(xs, low, high, color=s.look.color, alpha=0.18, lw=0)
        else:
            ax.errorbar(xs, mean, yerr=[mean - low, high - mean], color=s.look.color,
                        capsize=3, lw=1.2)


def _points(ax: object, panel: Panel, names: bool) -> None:
    """Categories on the y axis (top down, named on the first panel only), the value with
    its std on the x axis."""
    drawn = [s for s in panel.series if s.points]
    for i, s in enumerate(drawn):
        mean, low, high = _spread(s, panel.percent)
        ax.errorbar(mean, [i], xerr=[mean - low, high - mean], color=s.look.color,
                    marker=s.look.marker, ms=8, capsize=4, lw=1.4, ls="none", clip_on=False)
    ax.set_yticks(range(len(drawn)), [wrap(s.label) for s in drawn] if names else [])
    ax.set_ylim(len(drawn) - 0.5, -0.5)
    ax.grid(axis="y", visible=False)


def _panel(ax: object, panel: Panel, kind: str, first: bool) -> None:
    values = [v for s in panel.series if s.points for part in _spread(s, panel.percent)
              for v in part] + [y for _, _, y in panel.refs]
    if panel.categorical:
        _points(ax, panel, first)
        ax.set_xlabel(panel.title)
    else:
        for s in panel.series:
            if s.points:
                _line(ax, s, panel.percent)
            else:  # a series without records: a legend entry saying so
                ax.add_line(Line2D([], [], color="none", label=wrap(s.label)))
        for label, x, y in panel.refs:
            ax.scatter([x], [y], label=wrap(label), **STAR)
        ax.set(xlabel=panel.xlabel, ylabel=panel.title)
        xs = [float(p.x) for s in panel.series for p in s.points] + [x for _, x, _ in
                                                                        panel.refs]
        if panel.xscale == "log":
            _bytes_axis(ax, min(xs), max(xs))
        elif kind == "ablation":
            ticks = sorted(set(xs))
            ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
            span = (ticks[-1] - ticks[0]) or 1.0
            ax.set_xlim(ticks[0] - 0.08 * span, ticks[-1] + 0.08 * span)
        else:
            _tasks_axis(ax, max(xs))
    if panel.percent:
        _percent(ax, panel, values)
    elif panel.metric == "masks_allocated":
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        tasks = max(float(p.x) for s in panel.series for p in s.points)
        ax.plot([1, tasks], [1, tasks], color="black", ls=":", lw=1.1,
                label="one mask per task")
        top = max(values) * 1.05
        ax.set_ylim(0, top)
        panel.limits = (0, top)


def draw(chart: Chart, kind: str, folder: Path) -> Chart:
    """Render ``chart`` (``kind`` as in ``FigureSpec``) into ``folder``; record its size."""
    n = len(chart.panels)
    own = not chart.shared_legend and not chart.panels[0].categorical  # a legend per panel
    cols = 1 if n == 1 or own else 2
    rows = math.ceil(n / cols)
    categories = max(len(p.series) for p in chart.panels)
    height = PANEL[1] if not chart.panels[0].categorical else 1.2 + 0.45 * categories
    width = PANEL[0] * cols + (LEGEND if own else 0.0)
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(width, height * rows), layout="constrained")
        axes = list(fig.subplots(rows, cols, squeeze=False).flat)
        for i, (ax, panel) in enumerate(zip(axes, chart.panels)):
            _panel(ax, panel, kind, i == 0)
            if panel.heading:
                ax.set_title(panel.heading)
            if own:
                ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False,
                          fontsize="small")
        for ax in axes[n:]:
            ax.set_visible(False)
        if chart.shared_legend and not chart.panels[0].categorical:
            handles, names = axes[0].get_legend_handles_labels()
            fig.legend(handles, names, loc="outside lower center", frameon=False,
                       ncols=min(len(names), 3 if cols == 2 else 2), fontsize="small")
        chart.size = save(fig, folder, chart.stem)
    return chart


def oracle_matrix(group: Group) -> tuple[list[int], np.ndarray]:
    """The oracle accuracy (%) of each task (columns) after each evaluation point (rows),
    averaged over the group's seeds."""
    points = sorted({p["after_tasks"] for r in group.runs for p in r.record["checkpoints"]})
    tasks = points[-1]
    stack = np.full((len(group.runs), len(points), tasks), np.nan)
    for k, run in enumerate(group.runs):
        for point in run.record["checkpoints"]:
            i = points.index(point["after_tasks"])
            stack[k, i, :len(point["oracle"])] = np.array(point["oracle"]) * 100
    with np.errstate(all="ignore"):
        counts = (~np.isnan(stack)).sum(axis=0)
        matrix = np.where(counts > 0, np.nansum(stack, axis=0) / np.maximum(counts, 1), np.nan)
    return points, matrix


def heatmap(group: Group, label: str, setting: str, stem: str, folder: Path
            ) -> tuple[int, int]:
    """The oracle matrix averaged over seeds; returns the image size."""
    points, matrix = oracle_matrix(group)
    tasks = matrix.shape[1]
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=HEATMAP, layout="constrained")
        ax = fig.subplots()
        cmap = matplotlib.colormaps["viridis"].with_extremes(bad="white")
        image = ax.imshow(matrix, aspect="auto", cmap=cmap, vmin=0, vmax=100,
                          interpolation="nearest")
        fig.colorbar(image, ax=ax, label="accuracy with the task given (%)")
        if tasks <= ANNOTATE_UP_TO and len(points) <= ANNOTATE_UP_TO:
            for (i, j), value in np.ndenumerate(matrix):
                if not np.isnan(value):
                    ax.text(j, i, f"{value:.0f}", ha="center", va="center", fontsize=7,
                            color="white" if value < 50 else "black")
        locator = MaxNLocator(integer=True, nbins=8, steps=[1, 2, 5, 10])
        ticks = sorted({1, *(t for t in locator.tick_values(1, tasks) if 1 <= t <= tasks)})
        ax.set_xticks([t - 1 for t in ticks], [str(int(t)) for t in ticks])
        step = max(1, math.ceil(len(points) / 12))
        ax.set_yticks(range(0, len(points), step), [str(p) for p in points[::step]])
        ax.grid(False)
        ax.set(xlabel="task", ylabel="tasks learned")
        seeds = len(group.runs)
        ax.set_title(wrap(label, 60) + f"\n{setting}, mean over {seeds} seed"
                     + "s" * (seeds != 1), fontsize="medium")
        return save(fig, folder, stem)

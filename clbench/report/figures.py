"""Figures as data: which groups a figure shows, as which series, with which numbers.

A :class:`Chart` holds panels of series of points (mean and spread over seeds); ``draw``
renders it and :meth:`Chart.csv_rows` writes the plotted numbers beside it. Charts come from a
``reproduce.yaml`` figure (:func:`experiment_chart`, the paper's form) or from a setting's
leaderboard (:func:`setting_chart`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from clbench.errors import ClbenchError
from clbench.report.labels import Look, labels, looks
from clbench.report.published import setting_matches
from clbench.report.runs import Group, flat_config
from clbench.report.tables import milestone
from clbench.results import Summary, summarize

KINDS = ("tasks", "ablation", "bytes", "points", "masks")
METRICS = {"accuracy": "accuracy (%)", "task_inference": "task-inference accuracy (%)",
           "oracle_accuracy": "accuracy with the task given (%)",
           "forgetting": "forgetting (points)"}
MAX_SERIES = 8  # per panel
FEW_POINTS = 12  # a series evaluated this often or less sets a chart's table's columns
NOT_RUN = "not run yet"


@dataclass(frozen=True)
class SeriesSpec:
    """A figure's series: the groups whose setting matches ``select`` (fields as in
    ``published.yaml``), drawn as ``label``."""

    label: str
    select: dict[str, Any]


@dataclass(frozen=True)
class FigureSpec:
    """A figure of an experiment: its ``kind`` (accuracy vs tasks learned, an ablation over
    the config field ``x``, accuracy vs bytes (a line along ``x`` when given), points per
    series, or masks allocated vs tasks), the metrics on its y axes (one panel each), and
    its series."""

    id: str
    kind: str
    title: str
    paper: str = ""
    x: str = ""
    y: tuple[str, ...] = ("accuracy",)
    series: tuple[SeriesSpec, ...] = ()


@dataclass
class Point:
    x: float | str
    y: Summary
    config: str  # the group's config key, so that a reader (or test) finds the records
    variant: str
    field: str = "after_tasks"  # what x is: tasks learned, a config field, bytes.ENCODING


@dataclass
class Series:
    label: str
    look: Look | None
    points: list[Point] = field(default_factory=list)
    status: str = "measured"  # or NOT_RUN


@dataclass
class Panel:
    title: str
    metric: str
    xlabel: str
    series: list[Series]
    refs: list[tuple[str, float, float]] = field(default_factory=list)  # label, x, y
    xscale: str = "linear"
    categorical: bool = False
    heading: str = ""  # the panel's title, when a figure has several
    limits: tuple[float, float] | None = None  # the y axis drawn, set by ``draw``

    @property
    def percent(self) -> bool:
        return self.metric in METRICS and self.metric != "forgetting"

    def legend_entries(self) -> int:
        return len(self.series) + len(self.refs)


@dataclass
class Chart:
    stem: str
    title: str
    caption: str
    panels: list[Panel]
    shared_legend: bool = True  # the panels show the same series (one legend below)
    size: tuple[int, int] = (0, 0)  # pixels, set by ``draw``

    def csv_rows(self) -> list[list[Any]]:
        """The plotted numbers: a row per point (and per reference value)."""
        rows: list[list[Any]] = [["panel", "series", "status", "config", "variant", "metric",
                                  "x_is", "x", "mean", "std", "n"]]
        for i, panel in enumerate(self.panels, 1):
            for s in panel.series:
                for p in s.points:
                    rows.append([i, s.label, s.status, p.config, p.variant, panel.metric,
                                 p.field, p.x, p.y.mean, p.y.std, p.y.n])
                if not s.points:  # not run yet, or no values of this metric (GG's inference)
                    status = s.status if s.status == NOT_RUN else f"no {panel.metric}"
                    rows.append([i, s.label, status, "", "", panel.metric, "", "", None,
                                 None, 0])
            for label, x, y in panel.refs:
                rows.append([i, label, "reference", "", "", panel.metric, "after_tasks", x, y,
                             None, ""])
        return rows


def numbers_at_points(chart: Chart) -> tuple[list[int], list[tuple[str, str, dict[int, Summary]]]]:
    """A tasks chart's numbers at its evaluation points, for a table beside it: the points
    (those of series evaluated at most :data:`FEW_POINTS` times; every series' when all were
    evaluated more often, thinned to the report's milestones) and a row per series and metric
    (label, metric, values by point). Nothing for charts of other x axes or of masks."""
    series = [(panel.metric, s) for panel in chart.panels if panel.metric in METRICS
              for s in panel.series if s.points]
    if not series or any(p.field != "after_tasks" for _, s in series for p in s.points):
        return [], []
    few = [s for _, s in series if len(s.points) <= FEW_POINTS]
    xs = {int(p.x) for s in few for p in s.points}
    if not few:
        every = {int(p.x) for _, s in series for p in s.points}
        xs = {t for t in every if milestone(t)} | {max(every)}
    rows = [(s.label, metric, {int(p.x): p.y for p in s.points if int(p.x) in xs})
            for metric, s in series]
    return sorted(xs), rows


# ------------------------------------------------------------------ numbers per group


def final(group: Group, metric: str) -> Summary:
    return group.stat(lambda r: r.final.get(metric), 100)


def curve(group: Group, metric: str) -> dict[int, Summary]:
    """Over seeds, per evaluation point: a metric averaged over the tasks learned, or the
    masks allocated by the end of each task."""
    if metric == "masks_allocated":
        series = [(r.record.get("extras") or {}).get("masks_allocated") or [] for r in
                  group.runs]
        length = max((len(s) for s in series), default=0)
        return {t + 1: summarize([s[t] if t < len(s) else None for s in series])
                for t in range(length)}
    return group.curve(metric)


def smallest_bytes(group: Group) -> tuple[str, Summary] | None:
    """The encoding that stores the group's runs in the fewest bytes, with its bytes."""
    encodings = sorted({e for r in group.runs for e in r.bytes()})
    sizes = [(e, group.stat(lambda r, e=e: r.bytes().get(e))) for e in encodings]
    sizes = [(e, s) for e, s in sizes if s.mean is not None]
    return min(sizes, key=lambda item: item[1].mean) if sizes else None


# ------------------------------------------------------------------ building charts


def _matching(groups: list[Group], spec: FigureSpec) -> list[tuple[str | None, list[Group]]]:
    """Each series spec with its groups (all groups, one entry, without specs)."""
    if not spec.series:
        return [(None, groups)]
    return [(s.label, [g for g in groups if setting_matches(s.select, g)]) for s in spec.series]


def _series(groups: list[Group], spec: FigureSpec, methods: list[str]
            ) -> list[tuple[Series, list[Group]]]:
    """Series with their groups: a group each, or (ablation) the groups differing only in
    the ablated field; a series spec matching no group is ``not run yet``."""
    chosen = list({id(g): g for _, gs in _matching(groups, spec) for g in gs}.values())
    along = spec.kind == "ablation" or (spec.kind == "bytes" and spec.x)  # lines along x
    names = labels(chosen, hide=(spec.x,) if along else ())
    drawn = looks(_firsts(chosen, names) if along else chosen, methods)
    out: list[tuple[Series, list[Group]]] = []
    for given, members in _matching(groups, spec):
        if not members:
            out.append((Series(f"{given}: {NOT_RUN}", None, status=NOT_RUN), []))
            continue
        by_label: dict[str, list[Group]] = {}
        for g in members:
            by_label.setdefault(names[id(g)], []).append(g)
        for auto, gs in by_label.items():
            words = auto.split(" · ")[1:]
            label = auto if given is None else " · ".join(
                [given, *words] if len(by_label) > 1 else [given])
            look = drawn.get(id(gs[0])) or drawn[id(_firsts(chosen, names)[0])]
            out.append((Series(label, look), gs))
    return out


def _firsts(groups: list[Group], names: dict[int, str]) -> list[Group]:
    """The first group of each label (an ablation series' look is its first group's)."""
    return list({names[id(g)]: g for g in reversed(groups)}.values())[::-1]


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def experiment_chart(spec: FigureSpec, stem: str, groups: list[Group], methods: list[str],
                     refs: list[tuple[str, float, float, dict[str, Any]]]) -> Chart | None:
    """The chart of one ``reproduce.yaml`` figure over the experiment's groups (None when no
    series has a record yet); ``refs`` are reference values (label, tasks, %, setting), drawn
    where a series' group is in their setting (or would be, for a series not run yet)."""
    built = _series(groups, spec, methods)
    if all(s.status == NOT_RUN for s, _ in built):
        return None
    shown = [g for _, members in built for g in members]
    wanted = [s.select for s in spec.series]
    refs = [(label, x, y) for label, x, y, setting in refs
            if any(setting_matches(setting, g) for g in shown)
            or any(_within(select, setting) for select in wanted)]
    panels = []
    for metric in spec.y:
        series = []
        for template, members in built:
            s = Series(template.label, template.look, status=template.status)
            s.points = _points(spec, metric, members)
            series.append(s)
        xlabel, scale, categorical = _axis(spec)
        panel_refs = [r for r in refs if metric == "accuracy" and spec.kind in ("tasks",
                                                                                "bytes")]
        panels.append(Panel(METRICS.get(metric, "masks allocated"), metric, xlabel, series,
                            panel_refs,
                            scale, categorical))
    caption = _caption(spec, panels)
    chart = Chart(stem, spec.title, caption, _split(panels))
    chart.shared_legend = len(chart.panels) == len(spec.y)
    return chart


def _within(select: dict[str, Any], setting: dict[str, Any]) -> bool:
    """Whether a series' selection names the same method and scenario as a setting."""
    return all(select.get(k) == setting.get(k) for k in ("method", "scenario")
               if k in setting) and "method" in select


def _points(spec: FigureSpec, metric: str, members: list[Group]) -> list[Point]:
    points = []
    for g in members:
        if spec.kind in ("tasks", "masks"):
            points += [Point(t, s, g.key, g.variant) for t, s in curve(g, metric).items()
                       if s.mean is not None]
        elif spec.kind == "ablation":
            x = _number(flat_config(g.config).get(spec.x))
            if x is not None:
                points.append(Point(x, final(g, metric), g.key, g.variant, spec.x))
        elif spec.kind == "bytes":
            size = smallest_bytes(g)
            if size is not None:
                points.append(Point(size[1].mean, final(g, metric), g.key, g.variant,
                                    f"bytes.{size[0]}"))
        else:
            points.append(Point("", final(g, metric), g.key, g.variant, ""))
    points = [p for p in points if p.y.mean is not None]
    return sorted(points, key=lambda p: p.x) if spec.kind in ("ablation", "bytes") else points


def _axis(spec: FigureSpec) -> tuple[str, str, bool]:
    if spec.kind in ("tasks", "masks"):
        return "tasks learned" if spec.kind == "tasks" else "tasks seen", "linear", False
    if spec.kind == "bytes":
        return "bytes stored (log scale; each group's smallest encoding)", "log", False
    if spec.kind == "ablation":
        return spec.x.replace("_", " "), "linear", False
    return "", "linear", True


def _caption(spec: FigureSpec, panels: list[Panel]) -> str:
    missing = [s.label.removesuffix(f": {NOT_RUN}") for s in panels[0].series
               if s.status == NOT_RUN]
    seeds = sorted({p.y.n for panel in panels for s in panel.series for p in s.points})
    spread = ("mean ± one standard deviation over seeds (n = "
              + ", ".join(map(str, seeds)) + ")" if seeds != [1] else "one seed each")
    text = f"{spec.paper + ': ' if spec.paper else ''}{spread}"
    if spec.kind in ("tasks", "masks"):
        text += "; markers at the evaluation points measured"
    if any(panel.refs for panel in panels):
        text += "; stars: reference values"
    if missing:
        text += f"; not run yet: {', '.join(missing)}"
    return text + "."


def _split(panels: list[Panel]) -> list[Panel]:
    """Panels of at most ``MAX_SERIES`` series, a method's series kept together."""
    out = []
    for panel in panels:
        if len(panel.series) <= MAX_SERIES:
            out.append(panel)
            continue
        chunks: list[list[Series]] = [[]]
        for s in panel.series:
            if len(chunks[-1]) == MAX_SERIES:
                chunks.append([])
            chunks[-1].append(s)
        for i, chunk in enumerate(chunks, 1):
            out.append(Panel(panel.title, panel.metric, panel.xlabel, chunk,
                             panel.refs if i == 1 else [], panel.xscale, panel.categorical,
                             _methods(chunk)))
    return out


def setting_chart(stem: str, title: str, groups: list[Group], names: dict[int, str],
                  methods: list[str]) -> Chart:
    """A leaderboard's figure: accuracy vs tasks learned when some group was evaluated more
    than once, else the final accuracy as points; panels of at most ``MAX_SERIES`` series,
    packed by method."""
    drawn = looks(groups, methods)
    curves = any(len(g.curve("accuracy")) > 1 for g in groups)
    by_method: dict[str, list[Series]] = {}
    for g in groups:
        s = Series(names[id(g)], drawn[id(g)])
        if curves:
            s.points = [Point(t, v, g.key, g.variant) for t, v in curve(g, "accuracy").items()]
        else:
            s.points = [Point("", final(g, "accuracy"), g.key, g.variant, "")]
        by_method.setdefault(g.config["method"], []).append(s)
    packs: list[list[Series]] = [[]]
    for series in by_method.values():
        for chunk in (series[i:i + MAX_SERIES] for i in range(0, len(series), MAX_SERIES)):
            if len(packs[-1]) + len(chunk) > MAX_SERIES:
                packs.append([])
            packs[-1].extend(chunk)
    xlabel = "tasks learned" if curves else ""
    panels = [Panel("accuracy (%)", "accuracy", xlabel, pack, categorical=not curves,
                    heading=_methods(pack) if len(packs) > 1 else "") for pack in packs]
    caption = ("Mean accuracy over the tasks learned so far, in each scenario's rule; bands "
               "± one std over seeds; markers at the evaluation points measured."
               if curves else "Final accuracy in each scenario's rule; bars ± one std over "
               "seeds.")
    return Chart(stem, title, caption, panels, shared_legend=False)


def _methods(series: list[Series]) -> str:
    names = list(dict.fromkeys(s.label.split(" (")[0].split(" · ")[0] for s in series))
    return ", ".join(names)


def check_spec(where: str, item: Any, index: int) -> FigureSpec:
    """A ``figures`` entry of ``reproduce.yaml``, checked (one-line errors)."""
    if not isinstance(item, dict):
        raise ClbenchError(f"{where} {index}: expected a mapping with kind and title")
    unknown = sorted(set(item) - {"id", "kind", "title", "paper", "x", "y", "series"})
    if unknown or "kind" not in item or "title" not in item:
        raise ClbenchError(f"{where} {index}: needs kind and title; may have id, paper, x, y, "
                           f"series{' (unknown: ' + ', '.join(unknown) + ')' if unknown else ''}")
    if item["kind"] not in KINDS:
        raise ClbenchError(f"{where} {index}: kind '{item['kind']}': use one of "
                           f"{', '.join(KINDS)}")
    if item["kind"] == "ablation" and not item.get("x"):
        raise ClbenchError(f"{where} {index}: an ablation needs x (a config field)")
    y = item.get("y", ["masks_allocated"] if item["kind"] == "masks" else ["accuracy"])
    y = [y] if isinstance(y, str) else y
    bad = [m for m in y if m not in (*METRICS, "masks_allocated")]
    if bad or not y:
        raise ClbenchError(f"{where} {index}: y {bad}: use {', '.join(METRICS)}")
    series = []
    for s in item.get("series") or []:
        if not isinstance(s, dict) or set(s) != {"label", "select"} or not isinstance(
                s["select"], dict):
            raise ClbenchError(f"{where} {index}: each series needs a label and a select "
                               "mapping of config fields")
        series.append(SeriesSpec(str(s["label"]), s["select"]))
    return FigureSpec(str(item.get("id") or f"figure-{index}"), item["kind"],
                      " ".join(str(item["title"]).split()), str(item.get("paper") or ""),
                      str(item.get("x") or ""), tuple(y), tuple(series))

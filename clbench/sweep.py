"""``clbench sweep``: a grid of runs, planned before anything runs, run where missing, summed up.

A sweep is the options of ``clbench run`` with some of them given several values: ``--grid
name=v1,v2`` on the command line (``param.NAME`` for method params) or lists in a YAML file of
the same names. Every method meets every combination; options a method does not take are dropped
for it (density without masks, a param it lacks, a learning rate it has not), then runs are
deduplicated by run id. Combinations a method refuses are listed with the reason, never run.
The option names and types are the options table's (:mod:`clbench.options`). Nothing here
prints: :func:`run_sweep` yields the lines the command line shows.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Generator
from contextlib import ExitStack, closing
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from clbench.errors import ClbenchError, Interrupted
from clbench.options import SETTINGS
from clbench.record import build_record
from clbench.runner import Line, RunInputs, RunSpec
from clbench.store import Store, load_record

#: Keys of a sweep file besides run settings and ``param.NAME``.
FILE_KEYS = ("method", "preset", "tag", "plugin", "log", "log_every")


@dataclass
class SweepSpec(RunInputs):
    """What the user asked for: methods, fixed options and params, and the axes to vary."""

    methods: list[str]
    fixed: dict[str, Any]
    params: list[str]
    axes: dict[str, list[Any]]


@dataclass
class Planned:
    """One deduplicated run of a sweep: ``exists``, ``run`` or ``refused`` (with why)."""

    spec: RunSpec
    label: str
    status: str
    config: Any = None  # the RunConfig, data identity included (None when refused)
    reason: str = ""

    @property
    def run_id(self) -> str:
        return self.config.run_id if self.config is not None else ""


def option_name(name: str) -> str:
    """``eval-at`` and ``--eval-at`` → ``eval_at``; ``param.x`` kept as is."""
    name = name.strip().lstrip("-")
    return name if name.startswith("param.") else name.replace("-", "_")


def typed(name: str, value: Any) -> Any:
    """A grid or file value converted to the run setting's type (params and methods stay
    text)."""
    if name.startswith("param."):
        return ",".join(map(str, value)) if isinstance(value, list) else str(value)
    if name == "method":
        return str(value)
    if name not in SETTINGS:
        raise ClbenchError(f"sweep: unknown option '{name}' (options: {', '.join(SETTINGS)}, "
                           "method, or param.NAME)")
    kind = SETTINGS[name].type
    if kind is str:
        return str(value)
    try:
        number = kind(value)
    except (TypeError, ValueError):
        what = "an integer" if kind is int else "a number"
        raise ClbenchError(f"sweep: {name}={value} is not {what}") from None
    if kind is int and isinstance(value, float) and value != number:
        raise ClbenchError(f"sweep: {name}={value} is not an integer")
    return number


def typed_int(name: str, value: Any) -> int:
    """A whole number from a sweep file."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ClbenchError(f"sweep: {name}={value} is not an integer")
    return value


def parse_grid(items: list[str]) -> dict[str, list[Any]]:
    """``--grid name=v1,v2`` (repeatable) into axes; a name given twice is an error."""
    axes: dict[str, list[Any]] = {}
    for item in items:
        name, sep, values = item.partition("=")
        name = option_name(name)
        if not sep or not name or not values.strip():
            raise ClbenchError(f"--grid {item}: write name=value1,value2 (e.g. seed=0,1,2)")
        if name in axes:
            raise ClbenchError(f"--grid {name} given twice: put all its values in one --grid")
        axes[name] = [typed(name, v.strip()) for v in values.split(",") if v.strip()]
    return axes


def read_file(path: str | Path) -> dict[str, Any]:
    """A sweep file: a YAML mapping of option names (lists vary, scalars are fixed),
    ``param.NAME``, ``method``, ``preset``, ``tag``, ``plugin``, ``log`` and ``log_every``."""
    import yaml

    file = Path(path).expanduser()
    try:
        data = yaml.safe_load(file.read_text())
    except OSError as exc:
        raise ClbenchError(f"sweep file {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ClbenchError(f"sweep file {path} is not valid YAML: "
                           f"{' '.join(str(exc).split())}") from None
    if not isinstance(data, dict):
        raise ClbenchError(f"sweep file {path}: expected a mapping of option names to values")
    return {option_name(str(k)): v for k, v in data.items()}


def merge_file(spec: SweepSpec, data: dict[str, Any]) -> SweepSpec:
    """Add a sweep file's entries where the command line did not set them."""
    listed = {k: v if isinstance(v, list) else [v] for k, v in data.items() if k in FILE_KEYS}
    methods = spec.methods or [str(m) for m in listed.get("method", [])]
    fixed, axes, params = dict(spec.fixed), dict(spec.axes), list(spec.params)
    given_params = {p.partition("=")[0] for p in params}
    for name, value in data.items():
        if name in FILE_KEYS:
            continue
        if name in fixed or name in axes or name.removeprefix("param.") in given_params:
            continue  # the command line wins
        if isinstance(value, list):
            axes[name] = [typed(name, v) for v in value]
        elif name.startswith("param."):
            params.append(f"{name.removeprefix('param.')}={typed(name, value)}")
        else:
            fixed[name] = typed(name, value)
    preset = spec.preset or (str(listed["preset"][0]) if "preset" in listed else None)
    log = spec.log or [str(name) for name in listed.get("log", [])]
    every = spec.log_every
    if every is None and "log_every" in listed:
        every = typed_int("log_every", listed["log_every"][0])
    return replace(spec, methods=methods, fixed=fixed, axes=axes, params=params, preset=preset,
                   log=log, log_every=every,
                   tags=sorted({*spec.tags, *map(str, listed.get("tag", []))}),
                   plugins=spec.plugins + [str(p) for p in listed.get("plugin", [])])


def combinations(spec: SweepSpec) -> list[tuple[str, dict[str, Any], list[str], dict[str, Any]]]:
    """Every (method, options, params, varied values) of the grid, in a fixed order."""
    axes = dict(spec.axes)
    methods = [str(m) for m in axes.pop("method", [])] or spec.methods
    if not methods:
        raise ClbenchError("sweep: give --method (repeatable), --grid method=a,b or 'method:' "
                           "in the sweep file")
    out = []
    for method in methods:
        for values in itertools.product(*axes.values()):
            given = {k: None for k in SETTINGS} | dict(spec.fixed)
            params = list(spec.params)
            varied = dict(zip(axes, values))
            for name, value in varied.items():
                if name.startswith("param."):
                    params = [p for p in params if p.partition("=")[0] != name[6:]]
                    params.append(f"{name[6:]}={value}")
                else:
                    given[name] = value
            out.append((method, given, params, varied))
    return out


def drop_unsupported(method: type, given: dict[str, Any], params: list[str],
                     varied: dict[str, Any]) -> tuple[dict[str, Any], list[str], dict[str, Any]]:
    """Leave out options and params the method does not take."""
    given, varied = dict(given), dict(varied)
    gone = set()
    if not method.uses_density:
        gone |= {"density", "sparsity"}
    if method.primary_lr is None:
        gone.add("lr")
    for name in gone:
        given[name] = None
        varied.pop(name, None)
    names = {p.name for p in method.params}
    params = [p for p in params if p.partition("=")[0].strip() in names]
    varied = {k: v for k, v in varied.items()
              if not k.startswith("param.") or k[6:] in names}
    return given, params, varied


def plan_sweep(spec: SweepSpec, store: Store, *, load_data: bool = True) -> list[Planned]:
    """The sweep's runs, deduplicated by run id, each ``exists``, ``run`` or ``refused``."""
    from clbench import registry
    from clbench.data import source_identity

    for path in spec.plugins:
        registry.load_plugin_file(path)
    identities: dict[str, dict | str] = {}
    planned: dict[str, Planned] = {}
    refused: list[Planned] = []
    for method_name, given, params, varied in combinations(spec):
        label = " ".join([method_name, *(f"{k}={v}" for k, v in varied.items())])
        run = RunSpec(method_name, given, params, **spec.inputs())
        try:
            method = registry.get_method(method_name)
            given, params, varied = drop_unsupported(method, given, params, varied)
            label = " ".join([method.name, *(f"{k}={v}" for k, v in varied.items())])
            run = replace(run, given=given, params=params)
            plan = run.plan()
            name = plan.config.dataset
            if name not in identities:
                try:
                    identities[name] = source_identity(name, spec.data_root,
                                                       download=spec.download and load_data)
                except ClbenchError as exc:
                    identities[name] = str(exc)
            if isinstance(identities[name], str):
                raise ClbenchError(identities[name])
            config = replace(plan.config, data_identity=dict(identities[name]))
        except ClbenchError as exc:  # Incompatible included
            if all(r.label != label for r in refused):
                refused.append(Planned(run, label, "refused", reason=str(exc)))
            continue
        if config.run_id in planned:
            continue
        status = "exists" if store.complete(config.run_id) else "run"
        planned[config.run_id] = Planned(run, label, status, config)
    return [*planned.values(), *refused]


def render_plan(plan: list[Planned]) -> str:
    """One line per run, then the counts."""
    width = max((len(p.label) for p in plan), default=0)
    lines = []
    for p in plan:
        tail = p.run_id if p.status != "refused" else f"— {p.reason}"
        lines.append(f"  {p.status:<8} {p.label:<{width}}  {tail}")
    counts = {s: sum(p.status == s for p in plan) for s in ("exists", "run", "refused")}
    runs = counts["exists"] + counts["run"]
    lines.append(f"{runs} runs: {counts['exists']} exist, {counts['run']} to run; "
                 f"{counts['refused']} refused")
    return "\n".join(lines)


class Tally:
    """Overall progress of a sweep: runs done of total, elapsed time and ETA.

    The ETA costs each run left as the finished runs of its group (its config but the seed)
    took, else as the mean finished run, by their records' own time (a resumed run's earlier
    processes included), shared by the runs that execute at once. ``finished`` holds the
    seconds of the sweep's runs whose records already existed, by group: they count as
    finished runs. Runs under way count as whole runs left, so it errs long by up to one run
    per slot; before a run is finished there is no ETA.
    """

    def __init__(self, groups: list[str], parallel: int,
                 finished: dict[str, list[float]] | None = None) -> None:
        self.total, self.done, self.parallel = len(groups), 0, max(1, parallel)
        self.left = list(groups)
        # group -> seconds of its finished runs
        self.took: dict[str, list[float]] = {g: list(t) for g, t in (finished or {}).items()}
        self.start = time.perf_counter()

    def line(self, record: dict[str, Any], label: str, group: str) -> str:
        """The line of a run that ended with ``record``."""
        if record["status"] == "complete":
            self.took.setdefault(group, []).append(record["timing"]["total_s"])
            final = next(iter(record["final"].values()))
            what = (f"done    {label}: accuracy {100 * final['accuracy']:.2f}% "
                    f"({record['timing']['total_s']:.0f} s)")
        else:
            what = f"failed  {label}: {record['error']}"
        return f"{self._count(group)} {what} · {self._times()}"

    def elsewhere(self, label: str, holder: str, group: str) -> str:
        """The line of a run another process is training (it counts as done here)."""
        return f"{self._count(group)} running {label}: {holder} · {self._times()}"

    def eta(self) -> float | None:
        """Seconds until the runs left are done, or None before any run completed."""
        if not self.took:
            return None
        every = [t for times in self.took.values() for t in times]
        mean = sum(every) / len(every)
        return sum(sum(self.took[g]) / len(self.took[g]) if g in self.took else mean
                   for g in self.left) / self.parallel

    def _count(self, group: str) -> str:
        self.done += 1
        self.left.remove(group)
        return f"[{self.done}/{self.total}]"

    def _times(self) -> str:
        from clbench.progress import fmt

        eta = self.eta()
        elapsed = f"{fmt(time.perf_counter() - self.start)} elapsed"
        return elapsed if eta is None or not self.left else f"{elapsed}, ETA {fmt(eta)}"


def results_table(store: Store, run_ids: list[str]) -> str:
    """The sweep's closing table: per group of its runs (seeds of one config), n, mean ± std
    of final accuracy and of bytes, and failures."""
    from clbench.config import RunConfig
    from clbench.report.runs import Group, Run, name_groups, problem
    from clbench.report.tables import human_bytes

    groups: dict[tuple[str, str], Group] = {}
    failures: dict[str, int] = {}
    for run_id in run_ids:
        path = store.find(run_id)
        try:
            record = load_record(path) if path and path.is_file() else None
        except ClbenchError:
            record = None
        if record is None:
            continue
        key = RunConfig.from_dict(record["config"]).group_key
        if problem(record):
            failures[key] = failures.get(key, 0) + 1
            continue
        for variant in record["variants"]:
            groups.setdefault((key, variant), Group(key, variant, [])).runs.append(
                Run(str(path), record, variant))
    ordered = list(groups.values())
    if not ordered:
        return f"no complete runs ({sum(failures.values())} failed)"
    name_groups(ordered)
    validated = any("validation" in r.record for g in ordered for r in g.runs)
    rows = [("group", "n", "accuracy %", *(["validation %"] * validated), "bytes", "failed")]
    for g in ordered:
        acc = g.stat(lambda r: r.final["accuracy"], 100.0)
        val = g.stat(lambda r: r.record.get("validation", {}).get("accuracy"), 100.0)
        encodings = sorted({e for r in g.runs for e in r.bytes()})
        size = ", ".join(
            f"{e} {human_bytes(s.mean, s.std)}" for e in encodings
            for s in [g.stat(lambda r, e=e: r.bytes().get(e))]) or "unknown"
        shown = [_mean_std(acc), *([_mean_std(val)] * validated)]
        rows.append((g.name, str(acc.n), *shown, size, str(failures.get(g.key, 0))))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    text = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    left = sum(n for key, n in failures.items() if key not in {g.key for g in ordered})
    if left:
        text.append(f"and {left} failed runs of groups without a complete run")
    return "\n".join(text)


def _mean_std(stat: Any) -> str:
    if stat.mean is None:
        return "—"
    return f"{stat.mean:.2f}" + (f" ± {stat.std:.2f}" if stat.std is not None else "")


def run_sweep(spec: SweepSpec, results: str | None, *, executor: str, workers: int,
              address: str | None, dry_run: bool, connect_timeout: float = 30.0,
              verbose: bool = False) -> Generator[Line, None, int]:
    """Plan, show the plan, run what is missing, show the results table: yield what to show
    as it happens and return the exit code (1 when a run failed). Ctrl-C or SIGTERM while runs
    execute raises :class:`~clbench.errors.Interrupted` with the runs complete and not."""
    if executor not in ("local", "ray"):
        raise ClbenchError(f"--executor {executor}: choose local or ray")
    if workers < 1:
        raise ClbenchError(f"--workers {workers}: must be at least 1")
    if "threads" not in spec.fixed and "threads" not in spec.axes:
        threads = max(1, (os.cpu_count() or 1) // workers) if executor == "local" else 1
        spec = replace(spec, fixed={**spec.fixed, "threads": threads})
    store = Store(results)
    plan = plan_sweep(spec, store, load_data=not dry_run)
    yield Line(render_plan(plan))
    runs = [p for p in plan if p.status != "refused"]
    if not runs:
        raise ClbenchError("nothing to run: every combination was refused (see above)")
    if dry_run:
        return 0
    finished: dict[str, list[float]] = {}  # the existing runs' seconds, for the ETA
    for p in runs:
        path = store.complete(p.run_id) if p.status == "exists" else None
        if path is None:
            continue
        if spec.tags:
            store.add_tags(path, spec.tags)
        seconds = load_record(path).get("timing", {}).get("total_s")
        if seconds is not None:
            finished.setdefault(p.config.group_key, []).append(seconds)
    todo = [p for p in runs if p.status == "run"]
    elsewhere: set[str] = set()
    if todo:
        try:
            yield from _run_todo(todo, store, results, executor, workers,
                                 (address, connect_timeout, verbose), elsewhere, finished)
        except KeyboardInterrupt as exc:
            complete = sum(store.complete(p.run_id) is not None for p in runs)
            raise Interrupted.of(exc, complete, len(runs) - complete) from None
    yield Line(results_table(store, [p.run_id for p in runs]))
    failed = sum(store.complete(p.run_id) is None for p in runs if p.run_id not in elsewhere)
    if elsewhere:
        yield Line(f"{len(elsewhere)} of {len(runs)} runs are running in other processes (the "
                   "same command later finds their records)")
    if failed:
        yield Line(f"error: {failed} of {len(runs)} runs failed (their records hold the errors; "
                   "the same command retries them)", err=True)
    return 1 if failed else 0


def _run_todo(todo: list[Planned], store: Store, results: str | None, executor: str,
              workers: int, ray: tuple[str | None, float, bool], elsewhere: set[str],
              finished: dict[str, list[float]]) -> Generator[Line, None, None]:
    """Run the missing runs where the user asked, storing each record as it comes back; runs
    that another process is training (it holds their lock) are added to ``elsewhere``;
    ``finished``: the seconds of the runs that existed, by group (see :class:`Tally`)."""
    from clbench.executors import RunNote

    threads = {p.config.threads for p in todo}
    each = f"{'/'.join(map(str, sorted(threads)))} thread{'s' * (threads != {1})} each"
    shown: set[str] = set()
    with ExitStack() as stack:
        if executor == "ray":
            from clbench import cluster

            address, connect_timeout, verbose = ray
            log = None if verbose else cluster.log_path()
            if log is not None:
                yield Line(f"Ray's log lines go to {log} (--verbose shows them here)")
            session = stack.enter_context(cluster.session(address, results, connect_timeout,
                                                          log))
            yield Line(f"running {len(todo)} runs on {session.where()}, {each}")
            parallel = int(session.cpus() // max(threads))
            resources = [(p.config.threads, 1.0 if p.config.device.startswith("cuda") else 0.0)
                         for p in todo]
            ended = session.run([p.spec for p in todo], resources)
        else:
            from clbench.executors import run_local

            yield Line(f"running {len(todo)} runs on {workers} local "
                       f"worker{'s' * (workers > 1)}, {each}")
            ended = run_local([p.spec for p in todo], results, workers)
            parallel = min(workers, len(todo))
        tally = Tally([p.config.group_key for p in todo], parallel, finished)
        stack.enter_context(closing(ended))
        for index, record, notes, error in ended:
            item = todo[index]
            if record is None and not error:  # another process holds the run's lock
                elsewhere.add(item.run_id)
                yield Line(tally.elsewhere(item.label, str(notes[0]) if notes else "elsewhere",
                                           item.config.group_key))
                continue
            if record is None:
                record = build_record(item.config, item.spec.command, error=RuntimeError(error))
            store.write(record)
            for note in notes:
                if isinstance(note, RunNote):
                    yield Line(f"run {item.label}: {note}")
                elif note not in shown:
                    shown.add(note)
                    yield Line(f"note: {note.removeprefix('note: ')}")
            yield Line(tally.line(record, item.label, item.config.group_key))

"""The run pipeline: a :class:`RunSpec` (the command line, in data) is prepared once (planned,
its device resolved, its data loaded), skipped when a complete record exists, executed by the
engine (resuming from its checkpoint) and stored, complete or failed.

``clbench run`` goes through :func:`run_one`; every sweep executor through
:func:`execute_spec`. Nothing here prints: :func:`run_one` yields :class:`Line`\\ s that the
command line shows, and returns the exit code.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import Generator
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from clbench.errors import ClbenchError
from clbench.plan import Plan, make_plan, resolve_device, with_data
from clbench.record import build_record
from clbench.store import Store, load_record

if TYPE_CHECKING:
    from clbench.data import Source
    from clbench.live import Live
    from clbench.progress import ShowProgress


class Line(NamedTuple):
    """One line for the user: on stdout, or on stderr when ``err``."""

    text: str
    err: bool = False


@dataclass(kw_only=True)
class RunInputs:
    """What a command gives each of its runs besides the method, settings and params."""

    preset: str | None = None
    plugins: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    data_root: str | None = None
    download: bool = False
    command: list[str] = field(default_factory=list)
    log: list[str] = field(default_factory=list)  # live loggers (not part of the run id)
    log_every: int | None = None  # training-loss interval of the loggers (default 50)

    def inputs(self) -> dict[str, Any]:
        """These fields alone, to pass on to another spec."""
        return {f.name: getattr(self, f.name) for f in fields(RunInputs)}


@dataclass
class RunSpec(RunInputs):
    """What a process needs to run one configuration: the command line, in data."""

    method: str
    given: dict[str, Any]
    params: list[str] = field(default_factory=list)
    plugin_texts: dict[str, str] = field(default_factory=dict)  # path -> source, for Ray

    def plan(self) -> Plan:
        """The checked plan (no data loaded)."""
        from clbench.loggers import check_names

        check_names(self.log)
        if self.log_every is not None and self.log_every < 1:
            raise ClbenchError(f"--log-every {self.log_every}: must be at least 1")
        return make_plan(self.method, self.given, self.params, preset=self.preset,
                         plugins=self.plugins, tags=self.tags)

    def with_plugin_texts(self) -> RunSpec:
        """A copy carrying its plugin files' sources, to run where the files are not."""
        texts = {p: Path(p).expanduser().read_text() for p in self.plugins}
        return replace(self, plugin_texts=texts)


@dataclass
class Prepared:
    """A run ready to execute: its plan (config with data identity), data and device."""

    plan: Plan
    source: Source
    device: Any


def prepare(spec: RunSpec) -> Prepared:
    """Plan ``spec`` (here, from carried plugin sources where its plugin files are missing),
    resolve its device and load its data: once per run, every refusal before any work."""
    plan = _plan_here(spec)
    device = resolve_device(plan.config.device)
    plan, source = with_data(plan, spec.data_root, spec.download)
    return Prepared(plan, source, device)


def _plan_here(spec: RunSpec) -> Plan:
    """Plan ``spec``; plugin files missing here are written from their carried sources (into a
    temporary folder, removed once they are imported) and recorded under their original paths
    (so the run id is the same everywhere)."""
    if not spec.plugin_texts or all(Path(p).expanduser().is_file() for p in spec.plugins):
        return spec.plan()
    folder = Path(tempfile.mkdtemp(prefix="clbench-plugins-"))
    try:
        local = []
        for i, original in enumerate(spec.plugins):
            copy = folder / f"{i}-{Path(original).name}"
            copy.write_text(spec.plugin_texts[original])
            local.append(str(copy))
        plan = replace(spec, plugins=local).plan()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    digests = [hashlib.sha256(spec.plugin_texts[p].encode()).hexdigest() for p in spec.plugins]
    originals = [str(Path(p).expanduser().resolve()) for p in spec.plugins]
    plan.config = replace(plan.config, plugin={"path": ",".join(originals),
                                               "sha256": ",".join(digests)})
    return plan


def execute_prepared(run: Prepared, command: list[str], checkpoint: Path | None,
                     show_progress: ShowProgress = False, *, log: list[str] | None = None,
                     store: Store | None = None, log_every: int | None = None
                     ) -> tuple[dict[str, Any], list[str]]:
    """Execute a prepared run to its record, complete or failed (a failing run never raises;
    Ctrl-C does), and the notes to show. With ``checkpoint``, resume from and save to it; with
    ``log``, send its live numbers to those loggers, in its folder of ``store``."""
    from clbench.engine import execute

    notes: list[str] = []
    live = None
    try:
        if log:
            live = open_live(run, log, store or Store(None), log_every)
        record = execute(run.plan, run.source, command, device=run.device,
                         show_progress=show_progress, checkpoint=checkpoint, say=notes.append,
                         live=live)
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # noqa: BLE001 - kept as a failed record
        record = build_record(run.plan.config, command, error=exc)
    finally:
        if live is not None:
            live.close()
    return record, notes


def open_live(run: Prepared, log: list[str], store: Store, every: int | None) -> Live:
    """The run's live loggers, writing into its run folder."""
    from clbench.live import Live
    from clbench.store import run_dir_name

    config = run.plan.config
    return Live(log, store.logs_path(config), store.loss_curve_path(config),
                run_dir_name(config.to_dict(), config.run_id), every or 50)


def execute_spec(spec: RunSpec, results: str | None, *, resumable: bool = True,
                 show_progress: ShowProgress = False
                 ) -> tuple[dict[str, Any] | None, list[str]]:
    """Prepare and execute ``spec`` (a sweep's run, in a worker): its record and notes. With
    ``resumable``, the run resumes from and saves to its checkpoint under ``results``, holding
    the run's lock there: when another live process holds it, nothing is trained and the
    record is None, the note saying who runs it. A run refused while preparing raises its
    :class:`~clbench.errors.ClbenchError`."""
    run = prepare(spec)
    store = Store(results)
    if not resumable:
        return execute_prepared(run, spec.command, None, show_progress, log=spec.log,
                                store=store, log_every=spec.log_every)
    with store.lock(run.plan.config) as lock:
        holder = lock.acquire()
        if holder is not None:
            return None, [holder.describe()]
        done = store.complete(run.plan.config.run_id)  # finished while this run waited
        if done is not None:
            return load_record(done), []
        return execute_prepared(run, spec.command, store.checkpoint_path(run.plan.config),
                                show_progress, log=spec.log, store=store,
                                log_every=spec.log_every)


def run_one(spec: RunSpec, results: str | None, *, force: bool, progress: bool
            ) -> Generator[Line, None, int]:
    """``clbench run``: yield what to show as it happens; return the exit code (0 done or
    skipped, 1 failed)."""
    store = Store(results)  # refuses a results path that is a file, before any work
    run = prepare(spec)
    config = run.plan.config
    done = store.complete(config.run_id)
    if done is not None and not force:
        if spec.tags:
            store.add_tags(done, spec.tags)
        yield Line(f"skipped: a complete record exists at {done} (use --force to run again)")
        return 0
    with store.lock(config) as lock:
        holder = lock.acquire()
        if holder is not None:
            yield Line(f"not run here: {holder.describe()} (run {config.run_id}, results "
                       f"{store.root})")
            return 0
        done = store.complete(config.run_id)
        if done is not None and not force:  # it finished between the check and the lock
            yield Line(f"skipped: a complete record exists at {done} (use --force to run again)")
            return 0
        return (yield from _train(spec, run, store, force, progress))


def _train(spec: RunSpec, run: Prepared, store: Store, force: bool, progress: bool
           ) -> Generator[Line, None, int]:
    """Train a prepared run whose lock this process holds, store its record, sum it up."""
    config = run.plan.config
    if force:
        store.discard_checkpoint(config)
    yield Line(f"run {config.run_id}: {config.method} {config.scenario} {config.benchmark} "
               f"{config.dataset} {config.model}, {config.tasks} tasks, seed {config.seed}, "
               f"{config.threads} thread{'s' * (config.threads != 1)}")
    record, notes = execute_prepared(run, spec.command, store.checkpoint_path(config), progress,
                                     log=spec.log, store=store, log_every=spec.log_every)
    for note in notes:
        yield Line(note)
    path = store.write(record)
    if record["status"] != "complete":
        yield Line(f"error: run failed: {record['error']} (details in {path})", err=True)
        return 1
    for variant, values in record["final"].items():
        name = "" if variant == "default" else f" [{variant}]"
        inference = values["task_inference"]
        yield Line(
            f"done{name}: accuracy {percent(values['accuracy'])}, oracle "
            f"{percent(values['oracle_accuracy'])}"
            + (f", task inference {percent(inference)}" if inference is not None else "")
        )
    yield Line(f"record: {path} ({record['timing']['total_s']:.1f} s)")
    return 0


def percent(fraction: float) -> str:
    """A fraction as the reports show it: ``0.97125`` → ``97.12%``."""
    return f"{100 * fraction:.2f}%"

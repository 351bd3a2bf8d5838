"""Running one configuration: plan it, skip it when done, execute it (resuming from its
checkpoint), and store its record, complete or failed. ``clbench run`` and every sweep executor
go through :func:`execute_spec`."""

from __future__ import annotations

import hashlib
import tempfile
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import typer

from clbench import checkpoint as checkpoint_io
from clbench.errors import ClbenchError
from clbench.plan import Plan, make_plan, with_data
from clbench.store import Store


@dataclass
class RunSpec:
    """What a process needs to run one configuration: the command line, in data."""

    method: str
    given: dict[str, Any]
    params: list[str] = field(default_factory=list)
    preset: str | None = None
    plugins: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    data_root: str | None = None
    download: bool = False
    command: list[str] = field(default_factory=list)
    plugin_texts: dict[str, str] = field(default_factory=dict)  # path -> source, for Ray

    def plan(self) -> Plan:
        """The checked plan (no data loaded)."""
        return make_plan(self.method, self.given, self.params, preset=self.preset,
                         plugins=self.plugins, tags=self.tags)

    def with_plugin_texts(self) -> RunSpec:
        """A copy carrying its plugin files' sources, to run where the files are not."""
        texts = {p: Path(p).expanduser().read_text() for p in self.plugins}
        return replace(self, plugin_texts=texts)


def execute_spec(spec: RunSpec, results: str | None, *, checkpoints: bool = True,
                 show_progress: bool = False) -> tuple[dict[str, Any], list[str]]:
    """Run ``spec`` to a record, complete or failed (never raising for a failing run), and the
    notes to show. With ``checkpoints``, resumes from and saves to the run's checkpoint under
    ``results``."""
    notes: list[str] = []
    plan = _plan_here(spec)
    from clbench.engine import execute

    plan, source = with_data(plan, spec.data_root, spec.download)
    path = Store(results).checkpoint_path(plan.config) if checkpoints else None
    try:
        record = execute(plan, source, spec.command, show_progress=show_progress,
                         checkpoint=path, say=notes.append)
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # noqa: BLE001 - kept as a failed record
        record = failed_record(plan.config, spec.command, exc)
    return record, notes


def _plan_here(spec: RunSpec) -> Plan:
    """Plan ``spec``; plugin files missing here are written from their carried sources and
    recorded under their original paths (so the run id is the same everywhere)."""
    if not spec.plugin_texts or all(Path(p).expanduser().is_file() for p in spec.plugins):
        return spec.plan()
    folder = Path(tempfile.mkdtemp(prefix="clbench-plugins-"))
    local = []
    for i, original in enumerate(spec.plugins):
        text = spec.plugin_texts[original]
        copy = folder / f"{i}-{Path(original).name}"
        copy.write_text(text)
        local.append(str(copy))
    plan = replace(spec, plugins=local).plan()
    digests = [hashlib.sha256(spec.plugin_texts[p].encode()).hexdigest() for p in spec.plugins]
    originals = [str(Path(p).expanduser().resolve()) for p in spec.plugins]
    plan.config = replace(plan.config, plugin={"path": ",".join(originals),
                                               "sha256": ",".join(digests)})
    return plan


def run_one(spec: RunSpec, results: str | None, *, force: bool, progress: bool) -> int:
    """``clbench run``: return the exit code (0 done or skipped, 1 failed)."""
    store = Store(results)  # refuses a results path that is a file, before any work
    plan = spec.plan()
    from clbench.engine import resolve_device

    resolve_device(plan.config.device)
    plan, _ = with_data(plan, spec.data_root, spec.download)
    config = plan.config
    done = store.complete(config.run_id)
    if done is not None and not force:
        if spec.tags:
            store.add_tags(done, spec.tags)
        typer.echo(f"skipped: a complete record exists at {done} (use --force to run again)")
        return 0
    if force:
        checkpoint_io.remove(store.checkpoint_path(config))
    typer.echo(f"run {config.run_id}: {config.method} {config.scenario} {config.benchmark} "
               f"{config.dataset} {config.model}, {config.tasks} tasks, seed {config.seed}, "
               f"{config.threads} thread{'s' * (config.threads != 1)}")
    record, notes = execute_spec(spec, results, show_progress=progress)
    for note in notes:
        typer.echo(note)
    path = store_record(store, record)
    if record["status"] != "complete":
        typer.echo(f"error: run failed: {record['error']} (details in {path})", err=True)
        return 1
    for variant, values in record["final"].items():
        name = "" if variant == "default" else f" [{variant}]"
        inference = values["task_inference"]
        typer.echo(
            f"done{name}: accuracy {values['accuracy']:.4f}, oracle {values['oracle_accuracy']:.4f}"
            + (f", task inference {inference:.4f}" if inference is not None else "")
        )
    typer.echo(f"record: {path} ({record['timing']['total_s']:.1f} s)")
    return 0


def store_record(store: Store, record: dict[str, Any]) -> Path:
    """Write a record atomically; a complete one retires the run's checkpoint."""
    path = store.write(record)
    if record["status"] == "complete":
        checkpoint_io.remove(path.parent / checkpoint_io.FILE)
    return path


def failed_record(config: Any, command: list[str], exc: BaseException) -> dict[str, Any]:
    """A record that says the run failed, and why (never mistaken for a complete one)."""
    from clbench import provenance
    from clbench.config import SCHEMA_VERSION

    error = str(exc) if isinstance(exc, ClbenchError) else f"{type(exc).__name__}: {exc}"
    return {
        "schema_version": SCHEMA_VERSION,
        "run_id": config.run_id,
        "status": "failed",
        "error": " ".join(error.split()),
        "traceback": traceback.format_exc(),
        "config": config.to_dict(),
        "environment": {"versions": provenance.versions(), "git_commit": provenance.git_commit()},
        "command": command,
    }

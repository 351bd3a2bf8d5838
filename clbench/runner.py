"""``clbench run``: plan, skip what is done, execute, store the record (complete or failed)."""

from __future__ import annotations

import traceback
from typing import Any

import typer

from clbench.plan import make_plan, with_data
from clbench.store import Store


def run_one(
    method: str, given: dict[str, Any], params: list[str], *, preset: str | None,
    plugins: list[str], tags: list[str], data_root: str | None, download: bool,
    results: str | None, force: bool, progress: bool, command: list[str],
) -> int:
    """Run one configuration; return the exit code (0 done or skipped, 1 failed)."""
    store = Store(results)  # refuses a results path that is a file, before any work
    plan = make_plan(method, given, params, preset=preset, plugins=plugins, tags=tags)
    from clbench.engine import execute, resolve_device

    resolve_device(plan.config.device)
    plan, source = with_data(plan, data_root, download)
    config = plan.config
    done = store.complete(config.run_id)
    if done is not None and not force:
        if tags:
            store.add_tags(done, tags)
        typer.echo(f"skipped: a complete record exists at {done} (use --force to run again)")
        return 0
    typer.echo(f"run {config.run_id}: {config.method} {config.scenario} {config.benchmark} "
               f"{config.dataset} {config.model}, {config.tasks} tasks, seed {config.seed}, "
               f"{config.threads} threads")
    try:
        record = execute(plan, source, command, show_progress=progress)
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # noqa: BLE001 - keep the failure as a record, one line on screen
        path = store.write(failed_record(config, command, exc))
        typer.echo(f"error: run failed: {type(exc).__name__}: {exc} (details in {path})",
                   err=True)
        return 1
    path = store.write(record)
    final = record["final"]
    for variant, values in final.items():
        name = "" if variant == "default" else f" [{variant}]"
        inference = values["task_inference"]
        typer.echo(
            f"done{name}: accuracy {values['accuracy']:.4f}, oracle {values['oracle_accuracy']:.4f}"
            + (f", task inference {inference:.4f}" if inference is not None else "")
        )
    typer.echo(f"record: {path} ({record['timing']['total_s']:.1f} s)")
    return 0


def failed_record(config: Any, command: list[str], exc: BaseException) -> dict[str, Any]:
    """A record that says the run failed, and why (never mistaken for a complete one)."""
    from clbench import provenance
    from clbench.config import SCHEMA_VERSION

    return {
        "schema_version": SCHEMA_VERSION,
        "run_id": config.run_id,
        "status": "failed",
        "error": f"{type(exc).__name__}: {exc}",
        "traceback": traceback.format_exc(),
        "config": config.to_dict(),
        "environment": {"versions": provenance.versions(), "git_commit": provenance.git_commit()},
        "command": command,
    }

"""Where a sweep's runs execute: local worker processes here, Ray tasks in :mod:`clbench.cluster`.

Both hand each finished run's record back to the driver, which stores it (so Ray needs no
shared filesystem for records). Runs save their checkpoint after each task into the results
folder; on Ray only when the worker sees the driver's results folder (a shared filesystem),
otherwise an interrupted run restarts, and the driver says so. Plugin files travel to Ray
workers as their sources (:meth:`~clbench.runner.RunSpec.with_plugin_texts`). Local workers
write their run's progress on the sweep's stderr as plain lines labelled with the run id;
Ray's workers do not (their output goes to Ray's log).
"""

from __future__ import annotations

import os
import queue
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

from clbench.runner import RunSpec, execute_spec

#: (index of the spec, its record or None when the run crashed, notes, error of a crash)
Result = tuple[int, "dict[str, Any] | None", list[str], str]


class RunNote(str):
    """A note about one run of a sweep (shown with the run's label, every time), e.g. that Ray
    retried it; other notes are shown once per sweep."""


# --------------------------------------------------------------------------- local processes


def _watch_parent(parent: int) -> None:
    """Exit when the driver dies (even by ``kill -9``), so no orphan keeps running."""
    def watch() -> None:
        while True:
            if os.getppid() != parent:
                os._exit(1)
            threading.Event().wait(1.0)

    threading.Thread(target=watch, daemon=True).start()


def _local_worker(parent: int, results: str | None, tasks: Any, done: Any) -> None:
    """A worker process: run specs from ``tasks`` until ``None``, send records to ``done``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver handles Ctrl-C and stops us
    # stopped by the driver (or with it): end as Python does, so half-written files go away
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    _watch_parent(parent)
    while True:
        item = tasks.get()
        if item is None:
            return
        index, spec = item
        done.put(("start", index, os.getpid()))
        try:
            record, notes = execute_spec(spec, results, show_progress="lines")
            done.put(("done", index, (record, notes, "")))
        except Exception as exc:  # noqa: BLE001 - e.g. planning failed here: the driver records it
            done.put(("done", index, (None, [], " ".join(f"{type(exc).__name__}: {exc}".split()))))


def run_local(specs: list[RunSpec], results: str | None, workers: int) -> Iterator[Result]:
    """Run ``specs`` on ``workers`` processes; yield each run's :data:`Result` as it ends.

    A worker that dies (killed, out of memory) fails its current run and is replaced.
    """
    import multiprocessing

    mp = multiprocessing.get_context("spawn")
    tasks, done = mp.Queue(), mp.Queue()
    for item in enumerate(specs):
        tasks.put(item)
    procs: dict[int, Any] = {}
    running: dict[int, int] = {}  # pid -> spec index

    def start() -> None:
        proc = mp.Process(target=_local_worker, args=(os.getpid(), results, tasks, done),
                          daemon=True)
        proc.start()
        procs[proc.pid] = proc

    for _ in range(min(workers, len(specs))):
        start()
    remaining = set(range(len(specs)))
    try:
        while remaining:
            try:
                kind, index, payload = done.get(timeout=1.0)
            except queue.Empty:
                for pid, proc in list(procs.items()):
                    if proc.is_alive():
                        continue
                    del procs[pid]
                    lost = running.pop(pid, None)
                    if lost is not None and lost in remaining:
                        remaining.discard(lost)
                        yield lost, None, [], (f"the worker process died (exit code "
                                               f"{proc.exitcode}; out of memory?)")
                    if remaining:
                        start()
                continue
            if kind == "start":
                running[payload] = index
                continue
            running = {pid: i for pid, i in running.items() if i != index}
            remaining.discard(index)
            yield index, *payload
        for _ in procs:
            tasks.put(None)  # let idle workers exit
        for proc in procs.values():
            proc.join(timeout=5)
    finally:
        for proc in procs.values():
            if proc.is_alive():
                proc.terminate()
        for proc in procs.values():
            proc.join(timeout=3)  # one busy in C code (importing torch) is killed instead
            if proc.is_alive():
                proc.kill()
        tasks.cancel_join_thread()

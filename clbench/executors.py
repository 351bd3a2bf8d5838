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
import threading
from collections.abc import Iterator
from typing import Any

from clbench.errors import Terminated, keep_interrupts
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


def _terminate(signum: int, frame: Any) -> None:
    """End the worker as Python ends (:class:`~clbench.errors.Terminated`)."""
    raise Terminated(signum)


def _local_worker(parent: int, results: str | None, inbox: Any, done: Any) -> None:
    """A worker process: run the specs its ``inbox`` gives until ``None``; send each record
    (or the error that stopped the run) to ``done`` with the spec's index."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver handles Ctrl-C and stops us
    signal.signal(signal.SIGTERM, _terminate)  # stopped by the driver (or with it)
    keep_interrupts()
    _watch_parent(parent)
    while (item := inbox.get()) is not None:
        index, spec = item
        try:
            record, notes = execute_spec(spec, results, show_progress="lines")
            done.put((index, (record, notes, "")))
        except Exception as exc:  # noqa: BLE001 - e.g. planning failed here: the driver records it
            done.put((index, (None, [], " ".join(f"{type(exc).__name__}: {exc}".split()))))


def run_local(specs: list[RunSpec], results: str | None, workers: int) -> Iterator[Result]:
    """Run ``specs`` on ``workers`` processes; yield each run's :data:`Result` as it ends.

    Each worker has its own inbox and is given its next spec when it sends a result, so the
    driver always knows which run a worker holds: one that dies (killed, out of memory) fails
    that run and is replaced. Inboxes have no feeder thread: one ending while the interpreter
    shuts down (after an interrupt) unlinks its semaphores behind the back of
    multiprocessing's resource tracker, which then warns.
    """
    import multiprocessing

    mp = multiprocessing.get_context("spawn")
    done = mp.Queue()
    waiting = list(enumerate(specs))[::-1]  # popped from the end: the first spec first
    procs: dict[int, tuple[Any, Any]] = {}  # pid -> (process, its inbox)
    holding: dict[int, int] = {}  # pid -> index of the spec it runs

    def hand_out(pid: int) -> None:
        """Give the worker ``pid`` its next spec, or tell it to exit."""
        item = waiting.pop() if waiting else None
        if item is not None:
            holding[pid] = item[0]
        procs[pid][1].put(item)

    def start() -> None:
        inbox = mp.SimpleQueue()
        proc = mp.Process(target=_local_worker, args=(os.getpid(), results, inbox, done),
                          daemon=True)
        proc.start()
        procs[proc.pid] = (proc, inbox)
        hand_out(proc.pid)

    for _ in range(min(workers, len(specs))):
        start()
    try:
        while holding:
            try:
                index, payload = done.get(timeout=1.0)
            except queue.Empty:
                for pid, (proc, _) in list(procs.items()):
                    if proc.is_alive():
                        continue
                    del procs[pid]
                    lost = holding.pop(pid, None)
                    if lost is not None:
                        yield lost, None, [], (f"the worker process died (exit code "
                                               f"{proc.exitcode}; out of memory?)")
                        if waiting:
                            start()
                continue
            pid = next((p for p, i in holding.items() if i == index), None)
            if pid is None:  # its worker was declared dead just before the result arrived
                continue
            del holding[pid]
            hand_out(pid)
            yield index, *payload
        for proc, _ in procs.values():
            proc.join(timeout=5)
    finally:
        for proc, _ in procs.values():
            if proc.is_alive():
                proc.terminate()
        for proc, _ in procs.values():
            proc.join(timeout=3)  # one busy in C code (importing torch) is killed instead
            if proc.is_alive():
                proc.kill()

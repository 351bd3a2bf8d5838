"""The run lock: one process trains a config on a results folder at a time.

A run holds an exclusive ``flock`` on a file in its run folder (the store says where) while it
trains, and writes who it is into that file: process id, host and start time. A second process
of the same config finds the lock taken, reads the holder and does not train. The kernel drops
the lock when its process ends, however it ends (``kill -9`` included), so a lock left by a
process that is gone never blocks: the next run takes it and resumes from the checkpoint.
Only the ``flock`` counts; the holder removes the file when it lets go (so a results folder
holds records and checkpoints only), and a process that locked a file just removed that way
sees it is gone and tries again on the new one.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from clbench.record import now


@dataclass(frozen=True)
class Holder:
    """Who holds a run lock."""

    pid: int
    host: str
    since: str

    def describe(self) -> str:
        return f"running in process {self.pid} on host {self.host} since {self.since}"


class RunLock:
    """An exclusive, non-blocking lock on ``path``; :meth:`acquire` says whether it was taken.

    Use as a context manager after a successful :meth:`acquire` (or call :meth:`release`).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> Holder | None:
        """Take the lock and return None, or return the live process holding it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return self.holder()
            except BaseException:
                os.close(fd)
                raise
            try:
                current = os.stat(self.path).st_ino
            except FileNotFoundError:
                current = None
            if current == os.fstat(fd).st_ino:
                break
            os.close(fd)  # its holder removed the file as we locked it: lock the new one
        me = Holder(os.getpid(), socket.gethostname(), now())
        os.ftruncate(fd, 0)
        os.write(fd, (json.dumps(me.__dict__) + "\n").encode())
        self._fd = fd
        return None

    def holder(self, attempts: int = 20) -> Holder:
        """The holder written in the lock file (waiting a moment for a holder that has just
        taken the lock to write itself in)."""
        for _ in range(attempts):
            try:
                data = json.loads(self.path.read_text())
                return Holder(int(data["pid"]), str(data["host"]), str(data["since"]))
            except (OSError, ValueError, KeyError, TypeError):
                time.sleep(0.05)
        return Holder(0, "unknown", "unknown")

    def release(self) -> None:
        """Remove the lock file and let the lock go (ending the process lets it go too)."""
        if self._fd is not None:
            self.path.unlink(missing_ok=True)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()

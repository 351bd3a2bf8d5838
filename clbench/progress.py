"""Progress with ETA on stderr (tasks x iterations): a redrawn bar on a terminal, otherwise a
line at most every 30 seconds (for runs left in the background with their output in a log)."""

from __future__ import annotations

import sys
import time


class Progress:
    """Counts training steps; redraws at most ten times a second."""

    def __init__(self, total: int, label: str = "", enabled: bool = True) -> None:
        self.total, self.label = max(1, total), label
        self.enabled = enabled
        self.terminal = sys.stderr.isatty()
        self.done = self.first = 0  # first: steps done before this process (a resumed run)
        self.start = 0.0  # set at the first step, so setup time does not skew the ETA
        self._last = 0.0
        self.note = ""

    def tick(self) -> None:
        now = time.perf_counter()
        if self.done == self.first:
            self.start = now
        self.done += 1
        every = 0.1 if self.terminal else 30.0
        if self.enabled and (now - self._last > every or self.done == self.total):
            self._last = now
            self.draw(now)

    def resume(self, done: int) -> None:
        """Count ``done`` steps as already made (by an interrupted run)."""
        self.done = self.first = done

    def set_note(self, note: str) -> None:
        self.note = note
        if self.enabled and self.done and self.terminal:
            self.draw(time.perf_counter())

    def draw(self, now: float) -> None:
        elapsed = now - self.start
        frac = min(1.0, self.done / self.total)
        rate = (self.done - self.first) / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else 0.0
        bar = "#" * int(frac * 24)
        line = (f"{self.label} [{bar:<24}] {frac:6.1%} {fmt(elapsed)} elapsed, ETA {fmt(eta)} "
                f"{self.note}")
        sys.stderr.write(f"\r{line}\x1b[K" if self.terminal else f"{line}\n")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled and self.terminal:
            sys.stderr.write("\n")
            sys.stderr.flush()


def fmt(seconds: float) -> str:
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"

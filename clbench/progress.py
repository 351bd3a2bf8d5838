"""A run's progress on stderr: phase, rate, elapsed time and an ETA that models evaluation.

A run alternates two phases per task: training (``per_task`` steps) and the work after it
(scoring the task just learned, the evaluation point when the task count is one, saving the
checkpoint). Training time is steps over the measured rate of recent tasks. The work after
``k`` tasks is not constant: an evaluation point scores the ``k`` tasks learned, and under task
inference each decision costs more with every task learned (One-Shot is ∝ ``k`` per decision),
so it grows like ``k`` or ``k²``. :class:`Eta` fits ``c·kᵖ`` to the evaluation points already
timed (``p`` measured, not assumed from the scenario) and sums its prediction over the points
still to come; before one is timed, a point costs at least ``k`` times the scoring after a
task (it scores every task learned). Inside a point, the part under way (tasks given, then
inferred) and its tasks scored are shown, and once a slice of it is scored in this process its
rate gives the rest of the part: a point of thousands of masks takes most of an hour. While
work remains the ETA is never zero.

On a terminal the line is redrawn twice a second (also during an evaluation, which makes no
steps); otherwise a plain line is written every 30 seconds (``$CLBENCH_PROGRESS_EVERY``
seconds when set), for runs whose stderr is a log. A sweep's worker writes plain lines only,
terminal or not (several workers share it), and no closing line (the sweep writes each run's
end).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import IO, Literal

EVERY = "CLBENCH_PROGRESS_EVERY"  # seconds between plain lines off a terminal

#: how a run shows its progress: not at all, a bar (plain lines off a terminal), or plain
#: lines only, labelled with the run id and without a closing line (a sweep's worker)
ShowProgress = bool | Literal["lines"]


def fmt(seconds: float) -> str:
    """``75`` → ``01:15``; an hour or more → ``1:02:03``."""
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def fit_growth(points: Sequence[tuple[int, float]]) -> Callable[[int], float]:
    """The cost of the work after ``k`` tasks as a function of ``k``, fitted to measured
    ``(k, seconds)``: ``c·k^p``, least squares on logarithms (a busy machine's noise is a
    factor, not an offset, and one slow point must not bend the curve), the exponent kept in
    [0, 3]. One point: cost ∝ ``k`` (an evaluation scores every task learned); none: zero."""
    import numpy as np

    if not points:
        return lambda k: 0.0
    ks = np.log(np.array([float(k) for k, _ in points]))
    ys = np.log(np.maximum(np.array([float(y) for _, y in points]), 1e-9))
    if len(set(ks.tolist())) < 2:
        power = 1.0
    else:
        power = float(np.clip(np.polyfit(ks, ys, 1)[0], 0.0, 3.0))
    scale = float(np.exp((ys - power * ks).mean()))
    return lambda k: scale * k**power


class Eta:
    """Remaining seconds of a run from what it has measured so far (no clock of its own)."""

    window = 20  # training rate over the most recent tasks (a busy machine changes speed)

    def __init__(self, tasks: int, per_task: int, eval_at: Sequence[int]) -> None:
        self.tasks, self.per_task = tasks, max(1, per_task)
        self.eval_at = set(eval_at)
        self.trained: list[tuple[int, float]] = []  # (steps, seconds) per task trained here
        self.after: dict[int, float] = {}  # k -> seconds of the work after the k-th task

    def rate(self, steps: int = 0, seconds: float = 0.0) -> float:
        """Training steps per second over the recent tasks (and the current one's part)."""
        recent = self.trained[-self.window:]
        total_steps = sum(s for s, _ in recent) + steps
        total_time = sum(t for _, t in recent) + seconds
        return total_steps / total_time if total_time > 0 and total_steps > 0 else 0.0

    def after_cost(self) -> Callable[[int], float]:
        """Predicted seconds of the work after ``k`` tasks, evaluation point or not."""
        timed = [(k, s) for k, s in self.after.items() if k in self.eval_at]
        plain = [s for k, s in self.after.items() if k not in self.eval_at][-self.window:]
        between = sum(plain) / len(plain) if plain else min(self.after.values(), default=0.0)
        # before a point is timed, a floor: it scores each task learned as the work after a
        # task scores one (task inference costs more)
        growth = fit_growth(timed) if timed else (lambda k: k * between)
        return lambda k: growth(k) if k in self.eval_at else between

    def remaining(self, learned: int, steps: int, seconds: float, evaluating: bool,
                  phase_s: float, part_left: tuple[float, bool] | None = None
                  ) -> float | None:
        """Seconds left when ``learned`` tasks are trained and, if not ``evaluating``, ``steps``
        steps of the next one have taken ``seconds``; ``phase_s`` is the time spent in the
        work after task ``learned`` so far; ``part_left`` is, inside an evaluation point, the
        seconds its current part needs at its rate so far and whether that part is its last.
        None while nothing is measured."""
        rate = self.rate(steps, seconds)
        if rate <= 0:
            return None
        cost = self.after_cost()
        left = 0.0
        if evaluating:  # the rest of this work; when overrunning, some more, never zero
            left = max(cost(learned) - phase_s, 0.1 * phase_s)
            if part_left is not None:  # measured beats modelled for the part under way
                part_s, last = part_left
                left = part_s if last else max(left, part_s)
        steps_left = (self.tasks - learned) * self.per_task - (0 if evaluating else steps)
        return left + steps_left / rate + sum(cost(k) for k in range(learned + 1,
                                                                      self.tasks + 1))

    def done_work(self, learned: int, steps: int, seconds: float) -> float | None:
        """The modelled seconds of the work already done (also before a resume), for the
        bar's fraction."""
        rate = self.rate(steps, seconds)
        if rate <= 0:
            return None
        cost = self.after_cost()
        return (learned * self.per_task + steps) / rate + sum(cost(k)
                                                              for k in range(1, learned + 1))


class Progress:
    """Phase, rate, elapsed time and ETA of one run, drawn on ``stream`` (stderr).

    The engine calls :meth:`training` before each task, :meth:`tick` at each step (through the
    training loader), :meth:`evaluating` when the task's training ends and :meth:`close` at the
    end; a resumed run calls :meth:`resume` first. With ``lines_only`` it writes plain lines
    even on a terminal and no closing line (a sweep's worker). ``clock`` is injectable for tests.
    """

    def __init__(self, tasks: int, per_task: int, eval_at: Sequence[int], label: str = "",
                 enabled: bool = True, *, lines_only: bool = False,
                 clock: Callable[[], float] = time.perf_counter,
                 stream: IO[str] | None = None) -> None:
        self.eta = Eta(tasks, per_task, eval_at)
        self.tasks, self.per_task, self.label = tasks, max(1, per_task), label
        self.enabled, self.clock = enabled, clock
        self.stream = stream if stream is not None else sys.stderr
        self.terminal = enabled and not lines_only and self.stream.isatty()
        self.closing_line = not lines_only
        self.every = 0.5 if self.terminal else float(os.environ.get(EVERY, 30.0))
        self.learned = 0  # tasks trained (and, unless evaluating, scored)
        self.steps = 0  # steps of the task being trained
        self.evaluating_ = False
        self.part: tuple[str, int, int, bool] | None = None  # inside a point: see scoring()
        self.part_began: tuple[int, float] = (0, 0.0)  # its tasks done and time, when seen
        self.created = clock()  # elapsed time counts from here (setup included)
        self.start: float | None = None  # the first phase in this process
        self.phase_start = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_line = 0.0
        self._closed_line = False  # a terminal's redrawn line has been ended

    # ---------------------------------------------------------------- what the engine says

    def resume(self, learned: int, trained_s: Sequence[float] = (),
               after_s: Sequence[float] = ()) -> None:
        """Start after ``learned`` tasks done by an interrupted run; the ETA learns from its
        seconds per task of training and of the work after each (evaluation points), as if
        measured here: without them a resumed run's ETA left out every evaluation point
        until it had measured one itself."""
        self.learned = learned
        self.eta.trained += [(self.per_task, s) for s in trained_s]
        self.eta.after.update(enumerate(after_s, start=1))

    def training(self, task: int) -> None:
        """Training of task ``task`` (0-based) begins; the work after the previous one ends."""
        now = self.clock()
        with self._lock:
            self._end_after(now)
            self.learned, self.steps, self.evaluating_ = task, 0, False
            self.phase_start, self.part = now, None
            if self.start is None:
                self.start = now
        self._heartbeat()

    def tick(self) -> None:
        """One training step."""
        self.steps += 1

    def evaluating(self, learned: int) -> None:
        """Task ``learned`` is trained; the work after it (scoring, evaluation point) begins.
        (A run resumed inside an evaluation point begins here, with no training measured.)"""
        now = self.clock()
        with self._lock:
            if self.start is None:
                self.start = now
            else:
                self.eta.trained.append((self.steps, now - self.phase_start))
            self.learned, self.steps, self.evaluating_ = learned, 0, True
            self.phase_start, self.part = now, None
        self._heartbeat()
        if self.terminal:
            self.draw()

    def scoring(self, part: str, done: int, total: int, last: bool) -> None:
        """Inside an evaluation point, ``done`` of the ``total`` tasks of its part ``part``
        ("task given", "task inferred") are scored; ``last``: no part follows. The part's
        rate in this process gives the ETA of its rest."""
        now = self.clock()
        with self._lock:
            if self.part is None or self.part[0] != part:
                self.part_began = (done, now)
            self.part = (part, done, total, last)

    def close(self) -> None:
        """The run's last work is done: stop redrawing and write the final line."""
        now = self.clock()
        with self._lock:
            self._end_after(now)
        self._closed_line = True  # the final line ends it
        self.stop()
        if self.enabled and self.closing_line and self.start is not None:
            self.draw(final=True)

    def stop(self) -> None:
        """Stop redrawing (a run that failed or was interrupted writes no final line)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self.terminal and self.start is not None and not self._closed_line:
            self.stream.write("\n")
            self.stream.flush()
            self._closed_line = True

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if kind is not None:
            self.stop()

    # ---------------------------------------------------------------- what it shows

    def line(self, final: bool = False) -> str:
        """The progress line as of now."""
        now = self.clock()
        with self._lock:
            learned, steps, evaluating = self.learned, self.steps, self.evaluating_
            phase_s = now - self.phase_start
            seconds = 0.0 if evaluating else phase_s
            elapsed = now - self.created
            rate = self.eta.rate(steps, seconds)
            part = self.part if evaluating else None
            left = 0.0 if final else self.eta.remaining(learned, steps, seconds, evaluating,
                                                        phase_s, self._part_left(now))
            done = self.eta.done_work(learned, steps, seconds)
        if final:
            phase = f"done, {self.tasks} tasks"
        elif evaluating:
            phase = (f"evaluating after {learned}/{self.tasks} tasks"
                     if learned in self.eta.eval_at else f"scoring task {learned}/{self.tasks}")
            if part is not None:
                phase += f" ({part[0]}: {part[1]}/{part[2]})"
        else:
            phase = f"training task {learned + 1}/{self.tasks}"
        if final:
            frac = 1.0
        elif done is None or left is None:
            frac = learned / self.tasks
        else:
            frac = done / (done + left) if done + left > 0 else 0.0
        eta = "ETA --:--" if left is None else f"ETA {fmt(max(left, 1.0))}" if not final else ""
        bar = "#" * int(frac * 24)
        parts = [f"{self.label} [{bar:<24}] {frac:4.0%}", phase,
                 f"{rate:.0f} steps/s" if rate else "-- steps/s", f"{fmt(elapsed)} elapsed"]
        return " · ".join(parts + ([eta] if eta else []))

    def draw(self, final: bool = False) -> None:
        """Write the line: redrawn in place on a terminal, else as a new line."""
        text = self.line(final)
        self._last_line = self.clock()
        if self.terminal:
            self.stream.write(f"\r{text}\x1b[K" + ("\n" if final else ""))
            self._closed_line = final
        else:
            self.stream.write(f"{text}\n")
        self.stream.flush()

    # ---------------------------------------------------------------- internals

    def _part_left(self, now: float) -> tuple[float, bool] | None:
        """Seconds the evaluation point's current part needs at its rate in this process, and
        whether it is the last part; None before one of its slices is scored here."""
        if not self.evaluating_ or self.part is None:
            return None
        _, done, total, last = self.part
        began_done, began_at = self.part_began
        if done <= began_done:
            return None
        return (now - began_at) * (total - done) / (done - began_done), last

    def _end_after(self, now: float) -> None:
        if self.evaluating_:
            self.eta.after[self.learned] = now - self.phase_start
            self.evaluating_ = False

    def _heartbeat(self) -> None:
        """Start redrawing every ``every`` seconds (once, when the first phase begins)."""
        if not self.enabled or self._thread is not None:
            return

        def beat() -> None:
            while not self._stop.wait(self.every):
                self.draw()

        self._thread = threading.Thread(target=beat, name="clbench-progress", daemon=True)
        self._thread.start()

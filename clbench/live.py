"""A run's live numbers: the training loss as it trains, per-task summaries and evaluation
points, sent to the ``--log`` loggers (:mod:`clbench.loggers`) and kept for the record.

The engine calls a :class:`Live` at the run's landmarks; it exists only when ``--log`` names a
logger, so a run without one does no extra work per step. The training loss is the value of
the last scalar each training step back-propagates, whatever the method computes it from
(Avalanche strategies included: they train from the same loader): while a task trains,
:class:`LossCapture` wraps ``torch.Tensor.backward`` and the loader's per-step tick commits the
step's value. (When the native methods share one training loop, this belongs in its step
hook instead.) Each task's mean loss goes into the record (optional key ``train_loss``) and
every step's loss into the run folder's curve file (``task,step,loss`` rows).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from clbench.loggers import LOGGERS, Logger, flatten


class LossCapture:
    """While :meth:`begin` … :meth:`end`, remembers the last one-element ``backward`` of each
    step; :meth:`step` (called at each new batch) commits the previous step's value."""

    def __init__(self, on_loss: Callable[[float], None]) -> None:
        self.on_loss = on_loss
        self.pending: float | None = None
        self._original: Any = None

    def begin(self) -> None:
        import torch

        if self._original is not None:
            return
        original = torch.Tensor.backward
        capture = self

        def backward(tensor: Any, *args: Any, **kwargs: Any) -> Any:
            if tensor.numel() == 1:  # a loss (Avalanche keeps it of shape [1])
                capture.pending = float(tensor.detach())
            return original(tensor, *args, **kwargs)

        self._original = original
        torch.Tensor.backward = backward  # type: ignore[method-assign]

    def step(self) -> None:
        if self.pending is not None:
            self.on_loss(self.pending)
            self.pending = None

    def end(self) -> None:
        import torch

        self.step()
        if self._original is not None:
            torch.Tensor.backward = self._original  # type: ignore[method-assign]
            self._original = None


class Live:
    """The run's loggers, its loss capture and curve file, driven by the engine."""

    def __init__(self, names: list[str], logs: Path, curve: Path, run_name: str,
                 every: int = 50) -> None:
        self.loggers: list[Logger] = []
        try:
            for name in names:
                self.loggers.append(LOGGERS[name](logs / name, run_name))
        except BaseException:
            self.close()
            raise
        self.curve, self.every = curve, max(1, every)
        self.capture = LossCapture(self._loss)
        self.step = 0  # global training step (a resumed run continues the count)
        self.task = 0
        self.task_losses: list[float] = []
        self.window: list[float] = []
        self.means: list[float | None] = []  # per task, for the record

    # ------------------------------------------------------------------ landmarks

    def begin(self, config: dict[str, Any], learned: int, per_task: int,
              tick: Callable[[], None]) -> Callable[[], None]:
        """Log the config; continue after ``learned`` tasks (curve rows of later tasks, left
        by an interrupted run, are dropped); return the per-step tick to use."""
        for logger in self.loggers:
            logger.hyperparams(flatten(config))
        self.step = learned * per_task
        self.means = self._continue_curve(learned)

        def both() -> None:
            tick()
            self.capture.step()

        return both

    def training(self, task: int) -> None:
        """Task ``task`` (0-based) starts training."""
        self.task, self.task_losses, self.window = task + 1, [], []
        self.capture.begin()

    def trained(self, seconds: float) -> None:
        """The task's training ended: its mean loss and curve."""
        self.capture.end()
        self._flush_window()
        mean = sum(self.task_losses) / len(self.task_losses) if self.task_losses else None
        self.means.append(mean)
        first = self.step - len(self.task_losses) + 1
        self.curve.parent.mkdir(parents=True, exist_ok=True)
        with self.curve.open("a", newline="", encoding="utf-8") as handle:
            rows = csv.writer(handle, lineterminator="\n")
            if handle.tell() == 0:
                rows.writerow(["task", "step", "loss"])
            rows.writerows((self.task, first + i, repr(v)) for i, v in enumerate(self.task_losses))
        values = {"task/train_s": seconds}
        if mean is not None:
            values["task/train_loss"] = mean
        self._send("task", self.task, values)

    def evaluated(self, learned: int, diagonal: float, seconds: float) -> None:
        """The work after task ``learned`` ended: the task's own accuracy and the time."""
        self._send("task", learned, {"task/accuracy": diagonal, "task/eval_s": seconds})

    def point(self, entry: dict[str, Any], variants: list[str]) -> None:
        """An evaluation point (an entry of the record's ``checkpoints``)."""
        from clbench.metrics import average

        values = {"eval/oracle_accuracy": average(entry["oracle"])}
        for v in variants:
            suffix = "" if variants == ["default"] else f"/{v}"
            values[f"eval/accuracy{suffix}"] = average(entry["accuracy"][v])
            inference = entry["task_inference"][v]
            if inference is not None:
                values[f"eval/task_inference{suffix}"] = average(inference)
        for encoding, size in entry.get("bytes", {}).items():
            values[f"eval/bytes/{encoding}"] = float(size["bytes"])
        self._send("eval", entry["after_tasks"], values)

    def close(self) -> None:
        """Close every logger (the run ended, complete or not)."""
        self.capture.end()
        for logger in self.loggers:
            logger.close()
        self.loggers = []

    def record_losses(self) -> list[float | None]:
        """Per-task mean training loss, for the record (None where a task's is unknown)."""
        return list(self.means)

    # ------------------------------------------------------------------ internals

    def _loss(self, value: float) -> None:
        self.step += 1
        self.task_losses.append(value)
        self.window.append(value)
        if self.step % self.every == 0:
            self._flush_window()

    def _flush_window(self) -> None:
        if self.window:
            mean = sum(self.window) / len(self.window)
            self._send("train", self.step, {"train/loss": mean})
            self.window = []

    def _send(self, series: str, step: int, values: dict[str, float]) -> None:
        values = {k: v for k, v in values.items() if v is not None and math.isfinite(v)}
        for logger in self.loggers:
            logger.scalars(series, step, values)

    def _continue_curve(self, learned: int) -> list[float | None]:
        """Keep the curve's rows of the first ``learned`` tasks; their means."""
        if not self.curve.is_file():
            return [None] * learned
        from clbench.atomic import write_atomic

        with self.curve.open(newline="", encoding="utf-8") as handle:
            rows = [r for r in csv.DictReader(handle) if int(r["task"]) <= learned]
        write_atomic(self.curve, lambda out: _write_rows(out, rows))
        per_task: dict[int, list[float]] = {}
        for r in rows:
            per_task.setdefault(int(r["task"]), []).append(float(r["loss"]))
        return [sum(per_task[t]) / len(per_task[t]) if t in per_task else None
                for t in range(1, learned + 1)]


def _write_rows(handle: Any, rows: list[dict[str, str]]) -> None:
    out = csv.writer(handle, lineterminator="\n")
    out.writerow(["task", "step", "loss"])
    out.writerows((r["task"], r["step"], r["loss"]) for r in rows)

"""A run's live numbers: the training loss as it trains, per-task summaries and evaluation
points, sent to the ``--log`` loggers (:mod:`clbench.loggers`) and kept for the record.

The engine calls a :class:`Live` at the run's landmarks; it exists only when ``--log`` names a
logger, so a run without one does no extra work per step. The training loss is each step's
loss as the method optimises it, handed over by the one step loop of native methods
(:func:`clbench.training.train_steps`) and by the Avalanche wrapper after a strategy's backward
pass (its ``loss``, penalties included): :class:`Live` sets itself as their loss observer for
the run. Each task's mean loss goes into the record (optional key ``train_loss``) and every
step's loss into the run folder's curve file (``task,step,loss`` rows).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

from clbench.loggers import LOGGERS, Logger, flatten


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
        self.step = 0  # global training step (a resumed run continues the count)
        self.task = 0
        self.task_losses: list[float] = []
        self.window: list[float] = []
        self.means: list[float | None] = []  # per task, for the record

    # ------------------------------------------------------------------ landmarks

    def begin(self, config: dict[str, Any], learned: int, per_task: int) -> None:
        """Log the config; continue after ``learned`` tasks (curve rows of later tasks, left
        by an interrupted run, are dropped); observe every training step's loss from now on
        (call before the method is built: an Avalanche strategy is built to hand its losses
        over only in a logged run)."""
        from clbench.training import observe_losses

        for logger in self.loggers:
            logger.hyperparams(flatten(config))
        self.step = learned * per_task
        self.means = self._continue_curve(learned)
        observe_losses(self._loss)

    def training(self, task: int) -> None:
        """Task ``task`` (0-based) starts training."""
        self.task, self.task_losses, self.window = task + 1, [], []

    def trained(self, seconds: float) -> None:
        """The task's training ended: its mean loss and curve."""
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
        """Stop observing losses and close every logger (the run ended, complete or not)."""
        from clbench.training import loss_observer, observe_losses

        if loss_observer() == self._loss:
            observe_losses(None)
        for logger in self.loggers:
            logger.close()
        self.loggers = []

    def record_losses(self) -> list[float | None]:
        """Per-task mean training loss, for the record (None where a task's is unknown)."""
        return list(self.means)

    # ------------------------------------------------------------------ internals

    def _loss(self, loss: Any) -> None:
        value = float(loss.detach())
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

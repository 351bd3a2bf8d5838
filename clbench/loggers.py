"""Live loggers: where ``--log tensorboard|wandb|csv`` sends a run's numbers as it runs.

A logger is one small class: :meth:`Logger.hyperparams` once with the run's config (flattened
to ``name: scalar or text``), :meth:`Logger.scalars` for each batch of numbers of one series at
one step, :meth:`Logger.close` at the end. Series and their steps (:mod:`clbench.live` decides
what goes in them): ``train`` at the global training step (``train/loss``), ``task`` at the
task number (``task/train_loss``, ``task/train_s``, ``task/eval_s``, ``task/accuracy``, the
task-given accuracy just after learning it) and ``eval`` at the number of tasks learned (each
evaluation point's ``eval/accuracy``, ``eval/oracle_accuracy``, ``eval/task_inference`` and
``eval/bytes/<encoding>``, with ``/<variant>`` for methods with several answers).

Adding one (MLflow, Aim, ...) is a subclass with those three methods, decorated with
:func:`register_logger`; it is then a choice of ``--log``. Nothing here imports a logging
library until a logger of that kind is built, so ``clbench --help`` stays light.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import IO, Any, ClassVar

from clbench.errors import unknown

LOGGERS: dict[str, type[Logger]] = {}


def register_logger(cls: type[Logger]) -> type[Logger]:
    """Class decorator: make a logger a choice of ``--log`` by its ``name``."""
    LOGGERS[cls.name] = cls
    return cls


def check_names(names: list[str]) -> list[str]:
    """``--log`` values, deduplicated in order; a one-line error for an unknown one."""
    for name in names:
        if name not in LOGGERS:
            raise unknown("logger", name, LOGGERS)
    return list(dict.fromkeys(names))


class Logger:
    """One destination of a run's live numbers, writing under ``folder`` (its own)."""

    name: ClassVar[str] = ""

    def __init__(self, folder: Path, run_name: str) -> None:
        self.folder, self.run_name = folder, run_name

    def hyperparams(self, config: dict[str, Any]) -> None:
        """The run's config, flattened: ``{"params.output_size": 500, "tasks": 100, ...}``."""

    def scalars(self, series: str, step: int, values: dict[str, float]) -> None:
        """Numbers of one series (``train``, ``task`` or ``eval``) at one step."""
        raise NotImplementedError

    def close(self) -> None:
        """Flush and let go of files (also when the run failed)."""


@register_logger
class CsvLogger(Logger):
    """``metrics.csv`` in long form (series, step, metric, value) and ``hparams.json``, for
    pandas: ``pd.read_csv(path).pivot_table(index=["series", "step"], columns="metric")``.
    Appends, so a resumed run continues the same file."""

    name = "csv"

    def __init__(self, folder: Path, run_name: str) -> None:
        super().__init__(folder, run_name)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "metrics.csv"
        fresh = not path.exists()
        self._file: IO[str] = path.open("a", newline="", encoding="utf-8")
        self._writer = csv.writer(self._file, lineterminator="\n")
        if fresh:
            self._writer.writerow(["series", "step", "metric", "value"])

    def hyperparams(self, config: dict[str, Any]) -> None:
        from clbench.atomic import write_json_atomic

        write_json_atomic(self.folder / "hparams.json", config)

    def scalars(self, series: str, step: int, values: dict[str, float]) -> None:
        self._writer.writerows((series, step, k, repr(float(v))) for k, v in values.items())

    def close(self) -> None:
        self._file.close()


@register_logger
class TensorBoardLogger(Logger):
    """An event file (torch's ``SummaryWriter``), the config in TensorBoard's HParams tab."""

    name = "tensorboard"

    def __init__(self, folder: Path, run_name: str) -> None:
        super().__init__(folder, run_name)
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(folder))

    def hyperparams(self, config: dict[str, Any]) -> None:
        from torch.utils.tensorboard.summary import hparams

        for summary in hparams(config, {"eval/accuracy": 0.0}):
            self.writer.file_writer.add_summary(summary)

    def scalars(self, series: str, step: int, values: dict[str, float]) -> None:
        for key, value in values.items():
            self.writer.add_scalar(key, value, step)

    def close(self) -> None:
        self.writer.close()


@register_logger
class WandbLogger(Logger):
    """A W&B run, offline unless ``$WANDB_MODE`` says otherwise (``wandb sync`` uploads it
    later); project ``$WANDB_PROJECT`` or ``clbench``. Each series has its own step metric."""

    name = "wandb"
    STEPS = {"train": "train/step", "task": "task/number", "eval": "eval/tasks_learned"}

    def __init__(self, folder: Path, run_name: str) -> None:
        super().__init__(folder, run_name)
        import wandb

        folder.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(
            dir=str(folder), mode=os.environ.get("WANDB_MODE", "offline"),
            project=os.environ.get("WANDB_PROJECT", "clbench"), name=run_name,
            reinit="create_new",
            settings=wandb.Settings(console="off", quiet=True, x_disable_stats=True,
                                    silent=True),
        )
        for series, step in self.STEPS.items():
            self.run.define_metric(step, hidden=True)
            self.run.define_metric(f"{series}/*", step_metric=step)

    def hyperparams(self, config: dict[str, Any]) -> None:
        self.run.config.update(config, allow_val_change=True)

    def scalars(self, series: str, step: int, values: dict[str, float]) -> None:
        self.run.log({self.STEPS[series]: step, **values})

    def close(self) -> None:
        self.run.finish()


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A config as hyper-parameters: nested dicts joined with dots, lists as text, None as
    ``"None"`` (loggers take scalars and text)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        elif isinstance(value, (bool, int, float, str)):
            out[name] = value
        else:
            out[name] = json.dumps(value) if isinstance(value, (list, tuple)) else str(value)
    return out

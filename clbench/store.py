"""The results store: one folder per run holding ``record.json``, while the run is unfinished
its resume file ``checkpoint.pt``, ``run.lock`` while a process trains it (the lock it holds,
:mod:`clbench.lock`), and for runs logged live (``--log``) the training-loss curve
``train_loss.csv`` and the loggers' files under ``logs/<logger>/``.

Only this module knows the paths inside a results folder; the record's layout and schema are
:mod:`clbench.record`, the checkpoint's format is :mod:`clbench.checkpoint`, and every write goes
through :mod:`clbench.atomic`. A record's ``status`` is ``complete`` or ``failed``; anything else
(a missing, half-written or unparsable file) is not a complete record and never skips a run.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clbench.atomic import write_json_atomic
from clbench.errors import ClbenchError
from clbench.record import migrate

if TYPE_CHECKING:
    from clbench.config import RunConfig
    from clbench.lock import RunLock

RECORD = "record.json"
CHECKPOINT = "checkpoint.pt"
LOCK = "run.lock"
LOSS_CURVE = "train_loss.csv"
LOGS = "logs"
ENV = "CLBENCH_RESULTS"


def results_root(path: str | Path | None) -> Path:
    """``--results``, else ``$CLBENCH_RESULTS``, else ``results/``; refuse a file."""
    root = Path(path or os.environ.get(ENV) or "results").expanduser()
    if root.exists() and not root.is_dir():
        raise ClbenchError(f"results path {root} is a file: point --results at a folder")
    return root


def run_dir_name(config: dict[str, Any], run_id: str) -> str:
    """A readable folder name ending in the run id."""
    parts = [config["method"], config["scenario"], config["benchmark"], config["dataset"],
             f"s{config['seed']}", run_id]
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", "-".join(str(p) for p in parts))


class Store:
    """Records and checkpoints under one results root."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = results_root(root)

    def path(self, config: dict[str, Any], run_id: str) -> Path:
        """Where the record of a run (its config as a dict, and its run id) lives."""
        return self.root / run_dir_name(config, run_id) / RECORD

    def checkpoint_path(self, config: RunConfig) -> Path:
        """Where a run keeps its checkpoint: beside its record."""
        return self.path(config.to_dict(), config.run_id).with_name(CHECKPOINT)

    def loss_curve_path(self, config: RunConfig) -> Path:
        """A logged run's training loss at every step (``task,step,loss``)."""
        return self.path(config.to_dict(), config.run_id).with_name(LOSS_CURVE)

    def logs_path(self, config: RunConfig) -> Path:
        """The folder of a logged run's live loggers (one subfolder per logger)."""
        return self.path(config.to_dict(), config.run_id).with_name(LOGS)

    def lock(self, config: RunConfig) -> RunLock:
        """The lock a process holds while it trains this config here (not yet taken)."""
        from clbench.lock import RunLock

        return RunLock(self.path(config.to_dict(), config.run_id).with_name(LOCK))

    def discard_checkpoint(self, config: RunConfig) -> None:
        """Drop a run's checkpoint (``--force`` starts the run afresh)."""
        self.checkpoint_path(config).unlink(missing_ok=True)

    def find(self, run_id: str) -> Path | None:
        """The record file of a run id, if its folder exists."""
        if not self.root.is_dir():
            return None
        for folder in self.root.glob(f"*{run_id}"):
            if folder.is_dir() and folder.name.endswith(run_id):
                return folder / RECORD
        return None

    def complete(self, run_id: str) -> Path | None:
        """The record of a run id when it exists and is complete."""
        path = self.find(run_id)
        if path is None or not path.is_file():
            return None
        try:
            record = load_record(path)
        except ClbenchError:
            return None
        return path if record.get("status") == "complete" else None

    def write(self, record: dict[str, Any]) -> Path:
        """Write a record atomically; a complete one retires the run's checkpoint."""
        path = self.path(record["config"], record["run_id"])
        write_json_atomic(path, record)
        if record["status"] == "complete":
            path.with_name(CHECKPOINT).unlink(missing_ok=True)
        return path

    def add_tags(self, path: Path, tags: list[str]) -> None:
        """Add tags to an existing record (tags do not change the run id)."""
        record = load_record(path)
        merged = sorted(set(record["config"].get("tags", [])) | set(tags))
        if merged != record["config"].get("tags"):
            record["config"]["tags"] = merged
            write_json_atomic(path, record)

    def records(self) -> Iterator[tuple[Path, dict[str, Any] | None, str]]:
        """Every record file: (path, record or None, reason it could not be read)."""
        if not self.root.is_dir():
            return
        for path in sorted(self.root.glob(f"*/{RECORD}")):
            try:
                yield path, load_record(path), ""
            except ClbenchError as exc:
                yield path, None, str(exc)


def load_record(path: Path) -> dict[str, Any]:
    """Read one record, migrating older schema versions; a one-line error when unreadable."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ClbenchError(f"record {path} is unreadable ({type(exc).__name__}): delete it or "
                           "re-run with --force") from None
    if not isinstance(record, dict) or "config" not in record or "status" not in record:
        raise ClbenchError(f"record {path} is not a clbench record: delete it or re-run with "
                           "--force")
    return migrate(record)

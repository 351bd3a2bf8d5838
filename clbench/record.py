"""A run's record: its schema version and migrations, the state a run builds it from, and the
one function that writes it out, complete or failed.

A record is the JSON a run leaves in its folder (the store decides where). Its key
``checkpoints`` holds the run's *evaluation points* (one entry per evaluation after ``t``
tasks); the name is kept so records and run ids stay as they were. The resume file, which the
word "checkpoint" means everywhere else, is :mod:`clbench.checkpoint`.
"""

from __future__ import annotations

import datetime as dt
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from clbench import metrics, provenance
from clbench.errors import ClbenchError

#: Version of the record layout; it also enters every run id (see ``RunConfig.canonical``).
SCHEMA_VERSION = 1

#: schema_version -> function upgrading a record of that version by one version.
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}


def migrate(record: dict[str, Any]) -> dict[str, Any]:
    """Upgrade a record to the current schema, one version at a time."""
    version = record.get("schema_version", 0)
    if version > SCHEMA_VERSION:
        raise ClbenchError(
            f"record schema {version} is newer than this clbench ({SCHEMA_VERSION}): upgrade"
        )
    while version < SCHEMA_VERSION:
        if version not in MIGRATIONS:
            raise ClbenchError(f"record schema {version} cannot be migrated: re-run it")
        record = MIGRATIONS[version](record)
        version = record["schema_version"]
    return record


class Config(Protocol):
    """What a record needs of a run's config (a :class:`~clbench.config.RunConfig`, which
    imports this module for the schema version)."""

    @property
    def run_id(self) -> str: ...

    def to_dict(self) -> dict[str, Any]: ...


def now() -> str:
    """The current UTC time as the record writes it."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


@dataclass
class RunState:
    """What a run has done so far: what its checkpoint saves and its record is built from.

    ``learned`` counts the tasks trained; ``points`` are the evaluation points (the record's
    ``checkpoints``); ``partial`` is the evaluation point after ``learned`` tasks while it is
    being evaluated (its tasks evaluated so far, see :class:`clbench.engine.Evaluator`; None
    between points). ``stream``, ``stream_identity``, ``variants``, ``extras``, ``validation``
    and ``train_loss`` (per-task mean training loss, measured only when the run is logged
    live) are filled by the engine for the record only; a checkpoint does not hold them (a
    resumed run recomputes them). ``stream_identity`` (:func:`clbench.benchmark.
    stream_identity`) is written as the record's ``stream.identity``, outside the run id.
    """

    started_at: str
    environment: dict[str, Any]
    learned: int = 0
    diagonal: list[float] = field(default_factory=list)
    points: list[dict[str, Any]] = field(default_factory=list)
    timing: dict[str, Any] = field(default_factory=dict)
    resumes: list[dict[str, Any]] = field(default_factory=list)
    stream: dict[str, Any] = field(default_factory=dict)
    stream_identity: str | None = None
    variants: list[str] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict)
    validation: dict[str, Any] | None = None
    partial: dict[str, Any] | None = None
    train_loss: list[float | None] | None = None
    peak_memory_mb: float = 0.0  # the largest of the earlier processes of a resumed run

    #: The fields a checkpoint saves, by the key it saves them under.
    SAVED = {"learned": "learned", "diagonal": "diagonal", "checkpoints": "points",
             "timing": "timing", "started_at": "started_at", "environment": "environment",
             "resumes": "resumes"}
    #: Saved under this key only while an evaluation point is in progress (checkpoints written
    #: before it existed, or between points, lack it).
    PARTIAL = "partial_point"
    #: The peak memory of the processes that saved so far (checkpoints written before it existed
    #: lack it: a run resumed from one reports the peak of the later processes).
    PEAK = "peak_memory_mb"

    @classmethod
    def begin(cls) -> RunState:
        """A run starting now, on the code and machine as they are now."""
        return cls(started_at=now(), environment=provenance.environment())

    def saved(self) -> dict[str, Any]:
        """The fields a checkpoint holds (plain data), under their checkpoint keys."""
        out = {key: getattr(self, name) for key, name in self.SAVED.items()}
        out[self.PEAK] = self.peak_memory()
        if self.partial is not None:
            out[self.PARTIAL] = self.partial
        return out

    @classmethod
    def from_saved(cls, data: dict[str, Any]) -> RunState:
        """The state a checkpoint saved with :meth:`saved`."""
        return cls(**{name: data[key] for key, name in cls.SAVED.items()},
                   partial=data.get(cls.PARTIAL), peak_memory_mb=data.get(cls.PEAK, 0.0))

    def peak_memory(self) -> float:
        """Peak memory of the run in MB: of this process, or of an earlier one of a resumed
        run when larger."""
        return max(self.peak_memory_mb, provenance.peak_memory_mb())


def build_record(config: Config, command: list[str], state: RunState | None = None,
                 error: BaseException | None = None) -> dict[str, Any]:
    """The record of a run: complete from its final ``state``, or failed with ``error`` (then
    ``state`` is not needed: a failed record says what ran, where, and why it stopped)."""
    record: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION, "run_id": config.run_id,
        "status": "complete" if error is None else "failed",
        "error": None if error is None else one_line_error(error),
    }
    if error is not None:
        return {**record, "traceback": "".join(traceback.format_exception(error)),
                "config": config.to_dict(),
                "environment": {k: v for k, v in provenance.environment().items()
                                if k != "machine"},
                "command": command}
    if state is None:
        raise ValueError("a complete record needs the run's state")
    record.update({
        "config": config.to_dict(),
        "stream": state.stream if state.stream_identity is None
        else {**state.stream, "identity": state.stream_identity},
        "variants": state.variants,
        "diagonal": state.diagonal,
        "checkpoints": state.points,
        "final": final_metrics(state.points, state.diagonal, state.variants),
        "extras": state.extras,
        "timing": state.timing,
        "peak_memory_mb": state.peak_memory(),
        "environment": state.environment,
        "command": command,
        "started_at": state.started_at,
        "finished_at": now(),
    })
    if state.validation is not None:
        record["validation"] = state.validation
    if state.resumes:
        record["resumes"] = state.resumes
    if state.train_loss is not None:
        record["train_loss"] = state.train_loss
    return record


def one_line_error(error: BaseException) -> str:
    """A failure in one line: a :class:`ClbenchError`'s message, else type and message."""
    text = str(error) if isinstance(error, ClbenchError) else f"{type(error).__name__}: {error}"
    return " ".join(text.split())


def final_metrics(points: list[dict[str, Any]], diagonal: list[float],
                  variants: list[str]) -> dict[str, Any]:
    """The record's ``final``: per variant, average accuracy and task inference at the last
    evaluation point, with oracle accuracy, forgetting and BWT over all of them."""
    if not points:
        return {}
    last = points[-1]
    rows = [p["oracle"] for p in points]
    shared = {
        "oracle_accuracy": metrics.average(last["oracle"]),
        "forgetting": metrics.forgetting(rows, diagonal),
        "backward_transfer": metrics.backward_transfer(rows, diagonal),
    }
    out = {}
    for v in variants:
        inference = last["task_inference"][v]
        out[v] = {"accuracy": metrics.average(last["accuracy"][v]),
                  "task_inference": metrics.average(inference) if inference else None, **shared}
    return out

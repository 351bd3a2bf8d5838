"""The results store: one folder per run holding ``record.json``, written atomically.

Only this module knows paths and file formats of the store. A record's ``status`` is
``complete`` or ``failed``; anything else (a missing, half-written or unparsable file) is not a
complete record and never skips a run.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from clbench.config import SCHEMA_VERSION
from clbench.errors import ClbenchError

RECORD = "record.json"
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


def write_atomic(path: Path, fill: Callable[[IO[Any]], None], mode: str = "w") -> None:
    """Let ``fill`` write a temporary file beside ``path``, then rename it into place (a
    reader sees the old file or the whole new one, never half of it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8") as handle:
            fill(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as JSON atomically."""
    def fill(handle: IO[str]) -> None:
        json.dump(data, handle, indent=1, sort_keys=False)
        handle.write("\n")

    write_atomic(path, fill)


class Store:
    """Records under one results root."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = results_root(root)

    def path(self, config: dict[str, Any], run_id: str) -> Path:
        return self.root / run_dir_name(config, run_id) / RECORD

    def checkpoint_path(self, config: Any) -> Path:
        """Where a run (a :class:`~clbench.config.RunConfig`) keeps its checkpoint."""
        from clbench.checkpoint import FILE

        return self.path(config.to_dict(), config.run_id).parent / FILE

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
        path = self.path(record["config"], record["run_id"])
        write_json_atomic(path, record)
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


#: schema_version -> function upgrading a record of that version by one version.
MIGRATIONS: dict[int, Any] = {}


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

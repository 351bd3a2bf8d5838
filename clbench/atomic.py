"""Atomic file writes: a temporary file beside the target, renamed into place.

The one place that writes files whole or not at all; records, checkpoints and the report's
pages all go through it, so a reader sees the old file or the whole new one, never half of it.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


def write_atomic(path: Path, fill: Callable[[IO[Any]], None], mode: str = "w") -> None:
    """Let ``fill`` write a temporary file beside ``path``, then rename it into place (text is
    UTF-8 whatever the locale)."""
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
    """Write ``data`` as indented JSON atomically."""
    def fill(handle: IO[str]) -> None:
        json.dump(data, handle, indent=1, sort_keys=False)
        handle.write("\n")

    write_atomic(path, fill)

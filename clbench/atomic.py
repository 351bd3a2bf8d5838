"""Atomic file writes: a temporary file beside the target, renamed into place.

The one place that writes files whole or not at all; records, checkpoints and the report's
pages all go through it, so a reader sees the old file or the whole new one, never half of it.
The file gets the mode a plain ``open`` would give it (0644 under umask 022), not the 0600 of a
temporary file, so records in a shared group folder can be read by the group.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


def current_umask() -> int:
    """The process's umask, read without changing it where the kernel tells it (Linux), else by
    setting and restoring it."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomic(path: Path, fill: Callable[[IO[Any]], None], mode: str = "w") -> None:
    """Let ``fill`` write a temporary file beside ``path``, then rename it into place (text is
    UTF-8 whatever the locale)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
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

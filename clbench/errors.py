"""The one error type the CLI turns into a one-line message and a non-zero exit."""

from __future__ import annotations


class ClbenchError(Exception):
    """A problem the user can fix; its message is one line that names the fix."""


class DataMissing(ClbenchError):
    """A dataset is not under the data root and downloading was not asked for."""


class Incompatible(ClbenchError):
    """A method cannot run with the chosen scenario, benchmark, model or params."""

"""The one error type the CLI turns into a one-line message and a non-zero exit, and the
interrupt (Ctrl-C or SIGTERM) it turns into a line saying what is left."""

from __future__ import annotations


class ClbenchError(Exception):
    """A problem the user can fix; its message is one line that names the fix."""


class DataMissing(ClbenchError):
    """A dataset is not under the data root and downloading was not asked for."""


class Incompatible(ClbenchError):
    """A method cannot run with the chosen scenario, benchmark, model or params."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) or SIGTERM, once the command knows what it leaves: ``complete`` of its
    runs have complete records and ``missing`` do not (None while that is unknown)."""

    def __init__(self, signum: int, complete: int | None = None,
                 missing: int | None = None) -> None:
        super().__init__(signum)
        self.signum, self.complete, self.missing = signum, complete, missing

    @classmethod
    def of(cls, exc: BaseException, complete: int | None = None,
           missing: int | None = None) -> Interrupted:
        """The interrupt ``exc`` (a plain KeyboardInterrupt is SIGINT) with these counts."""
        import signal

        return cls(getattr(exc, "signum", signal.SIGINT), complete, missing)

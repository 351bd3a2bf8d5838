"""The one error type the CLI turns into a one-line message and a non-zero exit, and the
interrupt (Ctrl-C or SIGTERM) it turns into a line saying what is left, and the message for a
misspelt name (with a "did you mean"). Interrupts that Python would drop count here."""

from __future__ import annotations

from collections.abc import Iterable


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


class Terminated(SystemExit):
    """SIGTERM (from a sweep's driver) ending a worker process as Python ends: ``finally``
    blocks run, so half-written files go away; the exit code is 128 + the signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(128 + signum)
        self.signum = signum


def keep_interrupts() -> None:
    """Make an interrupt that a signal handler raised inside a callback Python cannot
    propagate from (a garbage-collector callback such as jax's, ``__del__``, a weakref
    finalizer) still end the process: Python would print it as "Exception ignored" and go
    on. The signal is sent again a moment later from another thread (raised in the hook, its
    handler would run inside the hook, whose exceptions Python drops as well)."""
    import os
    import signal
    import sys
    import threading

    previous = sys.unraisablehook
    pending: list[int] = []  # the signal a timer will send; one at a time

    def send() -> None:
        signum = pending.pop()  # first: if this one is dropped too, the hook sends another
        os.kill(os.getpid(), signum)

    def hook(unraisable: sys.UnraisableHookArgs) -> None:
        exc = unraisable.exc_value
        if isinstance(exc, Interrupted | Terminated):
            signum = exc.signum
        elif type(exc) is KeyboardInterrupt:  # Python's own Ctrl-C
            signum = signal.SIGINT
        else:
            previous(unraisable)
            return
        if pending:  # already on its way
            return
        pending.append(signum)
        timer = threading.Timer(0.01, send)
        timer.daemon = True
        timer.start()

    sys.unraisablehook = hook


def unknown(kind: str, name: str, choices: Iterable[str], fallback: str = "") -> ClbenchError:
    """The error for a misspelt name: ``unknown method 'supsp': did you mean 'supsup'?`` when
    choices are close, else the choices (and ``fallback``, e.g. where to list them)."""
    names = list(choices)
    close = closest(name, names)
    if close:
        return ClbenchError(f"unknown {kind} '{name}': did you mean "
                            f"{' or '.join(repr(c) for c in close)}?")
    return ClbenchError(f"unknown {kind} '{name}': choose one of {', '.join(names)}{fallback}")


def closest(name: str, names: Iterable[str], cutoff: float = 0.6) -> list[str]:
    """The names most like ``name`` (difflib's ratio, ties broken by the longer common
    prefix), at most two; none when nothing reaches ``cutoff``."""
    from difflib import SequenceMatcher
    from os.path import commonprefix

    typed = name.strip().lower()
    scored = []
    for candidate in names:
        ratio = SequenceMatcher(None, typed, candidate.lower()).ratio()
        if ratio >= cutoff:
            scored.append((round(ratio, 6), len(commonprefix([typed, candidate.lower()])),
                           candidate))
    if not scored:
        return []
    best = max(scored)[:2]
    return sorted(c for r, p, c in scored if (r, p) == best)[:2]

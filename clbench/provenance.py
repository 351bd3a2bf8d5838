"""Where a run came from: package versions, git commit, machine, peak memory."""

from __future__ import annotations

import platform
import resource
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

PACKAGES = ("clbench", "torch", "torchvision", "avalanche-lib", "numpy")


def versions() -> dict[str, str | None]:
    """Python and the packages that decide a run's numbers."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def git_commit() -> str | None:
    """The clbench checkout's commit (with ``-dirty`` for local changes), if it is a checkout."""
    here = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True,
            timeout=5, check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}-dirty" if dirty else commit


def machine() -> dict[str, str]:
    return {"platform": platform.platform(), "processor": platform.machine(),
            "python_executable": sys.executable}


def environment() -> dict[str, object]:
    """The code and machine a run began on, as its record keeps them."""
    return {"versions": versions(), "git_commit": git_commit(), "machine": machine()}


def reset_peak_memory() -> None:
    """Start measuring :func:`peak_memory_mb` from now (the current memory), so that a run
    sharing its process with earlier ones (a sweep's worker, tests) reports its own peak. On
    Linux and CUDA; elsewhere the process's peak stays."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")  # resets the peak resident set size (VmHWM, ru_maxrss)
    except OSError:
        pass
    if "torch" in sys.modules:
        import torch

        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.reset_peak_memory_stats()


def peak_memory_mb() -> float:
    """Peak resident memory of this process since :func:`reset_peak_memory` (else since it
    began), and CUDA's peak allocation when used."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    if "torch" in sys.modules:
        import torch

        if torch.cuda.is_available() and torch.cuda.is_initialized():
            peak += torch.cuda.max_memory_allocated() / 2**20
    return round(peak, 1)

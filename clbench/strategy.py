"""The former name of the Avalanche strategy wrapper, kept so that plugins written against it
(``from clbench.strategy import AvalancheMethod``, as ``examples/plugin-package``) keep
working. Everything here lives in :mod:`clbench.avalanche` (the Avalanche seam) and
:mod:`clbench.training`; new code imports from there. Imports neither torch nor Avalanche.
"""

from __future__ import annotations

from typing import Any

from clbench import avalanche as _seam
from clbench.avalanche import (
    OPTIMIZER_PARAMS,
    AvalancheMethod,
    build_plain_model,
    parameter_count,
)
from clbench.training import make_optimizer

__all__ = ["OPTIMIZER_PARAMS", "AvalancheMethod", "build_plain_model", "make_optimizer",
           "parameter_count"]


def __getattr__(name: str) -> Any:
    return getattr(_seam, name)  # ClbenchReplayPlugin, built lazily by the seam

"""The resume file: a run's state after its last finished task, so an interrupted run resumes
where it stopped ("checkpoint" means this file and nothing else).

The store decides where a checkpoint lives (``checkpoint.pt`` beside the run's record); this
module decides what it holds: the run config as JSON, the method's
:meth:`~clbench.method.Method.state_dict` and the :class:`~clbench.record.RunState` (tasks
learned, diagonal, evaluation points, timings). It is written atomically and read with
``weights_only=True``, so it can hold only tensors and plain data. The run's randomness needs
no saving: every generator is seeded per task by the context.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from clbench.atomic import write_atomic
from clbench.errors import ClbenchError
from clbench.record import RunState

FORMAT = 1


def _hashed_config(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k != "tags"}


def save(path: Path, config: dict[str, Any], state: RunState, method_state: dict[str, Any]
         ) -> None:
    """Write the run's ``state`` and its method's state atomically."""
    import torch

    payload = {"format": FORMAT, "config": json.dumps(_hashed_config(config), sort_keys=True),
               "method": method_state, **state.saved()}
    write_atomic(path, lambda handle: torch.save(payload, handle), "wb")


def load(path: Path, config: dict[str, Any]) -> tuple[RunState, dict[str, Any]] | None:
    """The run state and method state saved at ``path`` for this config, or None when there is
    no checkpoint.

    Refuses, with a one-line error naming the fix, a checkpoint that cannot be read or that
    another config wrote.
    """
    if not path.is_file():
        return None
    import pickle

    import torch

    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError, ValueError) as exc:
        raise ClbenchError(f"checkpoint {path} is unreadable ({type(exc).__name__}): delete it "
                           "to start the run afresh") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ClbenchError(f"checkpoint {path} is not a clbench checkpoint of format {FORMAT}: "
                           "delete it to start the run afresh")
    saved = json.loads(payload["config"])
    wanted = _hashed_config(config)
    if saved != wanted:
        differ = sorted(k for k in saved.keys() | wanted.keys() if saved.get(k) != wanted.get(k))
        raise ClbenchError(f"checkpoint {path} was written by another config (it differs in "
                           f"{', '.join(differ)}): delete it to start this run afresh")
    return RunState.from_saved(payload), payload["method"]

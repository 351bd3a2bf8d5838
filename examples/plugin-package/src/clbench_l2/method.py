"""The ``l2`` method: fine-tuning with an L2 pull towards the weights the previous task ended with.

Loss on task t > 0: cross-entropy + ``strength``/2 * ||w - w_{t-1}||^2, where w_{t-1} are all
the model's parameters as they were when task t began. It is Avalanche's Naive strategy plus
one Avalanche plugin (:mod:`clbench_l2.anchor`), on the shared model clbench builds.

This module is imported by ``clbench list``: it declares the method and imports neither torch
nor Avalanche (the Avalanche plugin is imported when a run builds the method).
"""

from __future__ import annotations

from typing import Any

from clbench.method import Bytes
from clbench.params import Param
from clbench.registry import register_method
from clbench.strategy import OPTIMIZER_PARAMS, AvalancheMethod


@register_method
class L2(AvalancheMethod):
    name = "l2"
    description = "L2 regulariser: fine-tune one shared model, pulled towards the weights " \
                  "it had before the current task"
    # It uses task boundaries (the anchor moves when a task ends), which NNs does not give.
    scenarios = frozenset({"gg", "gns", "gnu"})
    strategy_class = "Naive"
    params = (
        *OPTIMIZER_PARAMS,
        Param("strength", float, 1.0, "weight of strength/2 * ||w - w_prev||^2", low=0.0),
    )
    bytes_rules = {"fp32": "4 bytes per model parameter, twice from task 2 on (model and "
                           "anchor)"}

    def strategy_kwargs(self) -> dict[str, Any]:
        from clbench_l2.anchor import L2Anchor

        self.anchor = L2Anchor(self.ctx.params["strength"])
        return {"plugins": [self.anchor]}

    def bytes(self) -> dict[str, Bytes]:
        count = sum(p.numel() for p in self.model.parameters())
        copies = 2 if self.anchor.tasks_done else 1
        return {"fp32": Bytes(4 * count * copies, "fp32-parameters-and-anchor")}

    def extras(self) -> dict[str, Any]:
        """``l2_drift``: per task, the L2 distance the weights moved while learning it."""
        return {"l2_drift": list(self.anchor.drift)}

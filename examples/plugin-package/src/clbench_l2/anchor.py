"""The Avalanche plugin behind ``l2`` (imported at run time only: it imports torch)."""

from __future__ import annotations

from typing import Any

import torch
from avalanche.core import SupervisedPlugin


def _squared_distance(params: Any, anchor: list[torch.Tensor]) -> torch.Tensor:
    return sum(((p - a) ** 2).sum() for p, a in zip(params, anchor, strict=True))


class L2Anchor(SupervisedPlugin):
    """Adds ``strength``/2 * ||w - anchor||^2 to the loss; the anchor is the weights at the start
    of the task, once a task has been learned."""

    def __init__(self, strength: float) -> None:
        super().__init__()
        self.strength = strength
        self.anchor: list[torch.Tensor] = []
        self.tasks_done = 0
        self.drift: list[float] = []

    def before_training_exp(self, strategy: Any, *args: Any, **kwargs: Any) -> None:
        self.anchor = [p.detach().clone() for p in strategy.model.parameters()]

    def before_backward(self, strategy: Any, *args: Any, **kwargs: Any) -> None:
        if self.tasks_done and self.strength:
            penalty = _squared_distance(strategy.model.parameters(), self.anchor)
            strategy.loss = strategy.loss + self.strength / 2 * penalty

    def after_training_exp(self, strategy: Any, *args: Any, **kwargs: Any) -> None:
        with torch.no_grad():
            moved = _squared_distance(strategy.model.parameters(), self.anchor)
        self.drift.append(round(float(moved) ** 0.5, 6))
        self.tasks_done += 1

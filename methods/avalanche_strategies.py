"""Avalanche's own strategies as clbench methods, by name: ``--method avalanche:Naive``."""

from __future__ import annotations

from clbench.registry import register_method
from clbench.strategy import AvalancheMethod


@register_method
class Naive(AvalancheMethod):
    """Fine-tuning: one model trained on every task in turn (the lower bound of forgetting)."""

    name = "avalanche:naive"
    description = "Avalanche Naive: fine-tune one shared model on each task in turn"
    scenarios = frozenset({"gg", "gns", "gnu", "nns"})
    strategy_class = "Naive"

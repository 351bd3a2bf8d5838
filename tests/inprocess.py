"""Runs of registered methods in this process, on small streams, for tests."""

from __future__ import annotations

from typing import Any

import torch

from clbench.avalanche import avalanche_streams
from clbench.context import RunContext
from clbench.engine import execute
from clbench.plan import Plan, make_plan, with_data

#: the run options a test leaves to the method's preset unless it names them
PRESET = ("scenario", "benchmark", "dataset", "model", "tasks", "iters", "epochs", "density",
          "sparsity", "label_view", "eval_at")


class Small:
    """Plan, build and execute methods with these options (one thread; the rest from each
    method's preset unless given here or per call)."""

    def __init__(self, **options: Any) -> None:
        self.options = {**dict.fromkeys(PRESET), "threads": 1, **options}

    def given(self, **over: Any) -> dict[str, Any]:
        """The options of one call: the defaults, then ``over``."""
        return {**self.options, **over}

    def plan(self, method: str, params: tuple[str, ...] | list[str] = (), **over: Any) -> Plan:
        return make_plan(method, self.given(**over), list(params))

    def run(self, method: str, params: tuple[str, ...] | list[str] = (), **over: Any
            ) -> dict[str, Any]:
        """The record of a whole run."""
        plan, source = with_data(self.plan(method, params, **over), None, False)
        return execute(plan, source, ["test"], show_progress=False)

    def build(self, method: str, params: tuple[str, ...] | list[str] = (), **over: Any
              ) -> tuple[Any, list[Any], RunContext]:
        """The method object, the experiences of its stream and its context, without running."""
        plan, source = with_data(self.plan(method, params, **over), None, False)
        c = plan.config
        defs, _ = plan.benchmark.build(source, c.tasks, c.data_seed)
        ctx = RunContext(c, plan.scenario, plan.props, source, defs, torch.device("cpu"))
        return plan.method(ctx), list(avalanche_streams(ctx).train_stream), ctx

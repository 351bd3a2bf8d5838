"""Torch-free declarations shared by the methods that infer tasks by superposition (SupSup,
ExSSNeT, BatchE): the inference choices and the refusals they have in common. ``clbench list``
and planning read them without importing torch.
"""

from __future__ import annotations

from typing import Any

from clbench.method import refuse
from clbench.models import HIDDEN, PER_TASK_BN

OBJECTIVES = ("H", "G")  # entropy over all outputs; logsumexp through the superfluous outputs
INFERENCES = ("oneshot", "binary")


def refuse_per_task_bn(scenario: str, model: str, models: tuple[str, ...]) -> None:
    """Refuse task inference on a model with per-task running BatchNorm statistics, which a
    superposition of masks (or members) does not define; ``models``: the method's models."""
    if scenario != "gg" and model in PER_TASK_BN:
        mlps = ", ".join(m for m in models if m in HIDDEN)
        refuse(f"model '{model}' keeps per-task running BatchNorm statistics, which a "
               f"superposition does not define: run it in gg, or infer tasks with one of the "
               f"MLPs {mlps} in {scenario}")


def check_outputs(params: dict[str, Any], props: Any, objectives: tuple[str, ...]) -> None:
    """Refuse fewer output neurons than classes per task, and objective G (among
    ``objectives``) without superfluous neurons."""
    classes = props.classes_per_task
    outputs = params["output_size"] or classes
    if outputs < classes:
        refuse(f"output_size {outputs} is below the {classes} classes per task")
    if "G" in objectives and outputs == classes:
        refuse("objective G needs superfluous neurons: set --param output_size above the "
               f"{classes} classes per task (the paper uses 100 or 500)")

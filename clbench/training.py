"""Training helpers every native method shares: the optimizer its params name, the task's
epochs, and the one step loop (zero_grad, backward, an optional after-backward hook, step).

The loop is deliberately bare: no per-step allocation and no hook lists, so a method trains as
fast as a hand-written loop. Torch is imported when these run, never at import.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from clbench.context import RunContext


def make_optimizer(params: Any, settings: dict[str, Any]) -> torch.optim.Optimizer:
    """The optimizer named by the ``optimizer``/``lr``/``momentum``/``weight_decay`` settings
    (a method's params): ``sgd`` (with momentum), ``adam`` or ``rmsprop``."""
    import torch

    kind, lr, wd = settings["optimizer"], settings["lr"], settings["weight_decay"]
    if kind == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=settings["momentum"], weight_decay=wd)
    if kind == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    return torch.optim.RMSprop(params, lr=lr, weight_decay=wd)


def epochs(ctx: RunContext, index: int, *, reshuffle: bool = True) -> Iterator[Iterable[Any]]:
    """Task ``index``'s training batches, one iterable per epoch (one with ``--iters``).

    ``reshuffle``: one loader iterated once per epoch, so every epoch has its own order; else a
    fresh loader per epoch, so every epoch repeats the first one's order (BatchE, the bounds
    and PSP have always trained so with ``--epochs``; kept, so their numbers stay)."""
    loader = ctx.train_loader(index)
    for _ in range(ctx.config.epochs or 1):
        yield loader
        if not reshuffle:
            loader = ctx.train_loader(index)


def train_steps(optimizer: torch.optim.Optimizer, losses: Iterable[torch.Tensor], *,
                after_backward: Callable[[], None] | None = None) -> None:
    """The step loop: for each loss ``losses`` yields (computed lazily, one batch at a time),
    zero the gradients, backpropagate, call ``after_backward`` (e.g. to mask gradients), step.
    Code a generator runs after its ``yield`` runs after that step."""
    for loss in losses:
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if after_backward is not None:
            after_backward()
        optimizer.step()


def fit(forward: Callable[[torch.Tensor], torch.Tensor], optimizer: torch.optim.Optimizer,
        batches: Iterable[Any], *, after_backward: Callable[[], None] | None = None) -> None:
    """One step per ``(x, y, t)`` batch on the cross-entropy of ``forward(x)`` against ``y``."""
    import torch.nn.functional as F

    losses = (F.cross_entropy(forward(x), y) for x, y, _ in batches)
    train_steps(optimizer, losses, after_backward=after_backward)

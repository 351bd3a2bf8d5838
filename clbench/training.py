"""Training helpers every native method shares: the optimizer its params name, the task's
epochs, and the one step loop (zero_grad, backward, an optional after-backward hook, step).

The loop is deliberately bare: no per-step allocation and no hook lists, so a method trains as
fast as a hand-written loop. Torch is imported when these run, never at import. While a run is
logged live (``--log``) a loss observer is set (:func:`observe_losses`) and the loop hands it
each step's loss after the step; unlogged runs take the loop without it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from clbench.context import RunContext


#: Receives each training step's loss (a one-element tensor) while a run is logged live.
_loss_observer: Callable[[torch.Tensor], None] | None = None


def observe_losses(observer: Callable[[torch.Tensor], None] | None) -> None:
    """Give every training step's loss to ``observer`` from now on (None: stop). Native
    methods' steps (:func:`train_steps`) and Avalanche strategies' (``clbench.avalanche``)."""
    global _loss_observer
    _loss_observer = observer


def loss_observer() -> Callable[[torch.Tensor], None] | None:
    """The loss observer set by :func:`observe_losses`, if any."""
    return _loss_observer


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
    Code a generator runs after its ``yield`` runs after that step. A logged run's loss
    observer gets each loss after its step."""
    observe = _loss_observer  # read once: one None check per step when nothing observes
    for loss in losses:
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if after_backward is not None:
            after_backward()
        optimizer.step()
        if observe is not None:
            observe(loss)


def fit(forward: Callable[[torch.Tensor], torch.Tensor], optimizer: torch.optim.Optimizer,
        batches: Iterable[Any], *, after_backward: Callable[[], None] | None = None) -> None:
    """One step per ``(x, y, t)`` batch on the cross-entropy of ``forward(x)`` against ``y``."""
    import torch.nn.functional as F

    losses = (F.cross_entropy(forward(x), y) for x, y, _ in batches)
    train_steps(optimizer, losses, after_backward=after_backward)

"""The task-inference objective and what one gradient of it gives.

``image_objective``/``decision_objective``: H (entropy of the softmax over all outputs) or G
(logsumexp through the superfluous outputs). :func:`layer_signals`: one forward/backward of the
decisions' images at given weights, returning for every masked layer its inputs a_l and the
objective's gradient δ_l with respect to its outputs, from which ∂obj/∂α_t =
Σ_l Σ_n δ_{l,n}ᵀ (W_l ⊙ M_t^l) a_{l,n} follows for any mask t.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

if TYPE_CHECKING:
    from clbench.supermask.supernet import SupermaskNet


def image_objective(logits: Tensor, objective: str = "H", real: int | None = None) -> Tensor:
    """The objective per image (logits [..., outputs] → [...]): ``H``, the entropy of the
    softmax over all outputs, or ``G``, the logsumexp of the outputs with the first ``real``
    detached (its gradient flows through the superfluous outputs only)."""
    if objective == "H":
        logp = F.log_softmax(logits, -1)
        return -(logp.exp() * logp).sum(-1)
    return torch.logsumexp(torch.cat([logits[..., :real].detach(), logits[..., real:]], -1), -1)


def decision_objective(logits: Tensor, objective: str = "H", real: int | None = None,
                       valid: Tensor | None = None) -> Tensor:
    """Per-decision objective [D] of logits [D, b, outputs]: the mean of
    :func:`image_objective` over the decision's images (its ``valid`` ones when given)."""
    per = image_objective(logits, objective, real)
    if valid is None:
        return per.mean(1)
    return torch.where(valid, per, 0.0).sum(1) / valid.sum(1)




def group_decisions(x: Tensor, sizes: int | Sequence[int]) -> tuple[Tensor, Tensor | None, int]:
    """Rows [N, ...] → padded per-decision [D, bmax, F], a validity mask (None if equal) on
    x's device, and the smallest decision's size (sizes are checked in Python: no device sync)."""
    x = x.reshape(x.shape[0], -1)
    if isinstance(sizes, int):
        if sizes < 1 or x.shape[0] % sizes:
            raise ValueError(f"{x.shape[0]} rows cannot form decisions of {sizes}")
        return x.view(-1, sizes, x.shape[1]), None, sizes
    counts = [int(s) for s in sizes]
    if not counts or sum(counts) != x.shape[0] or min(counts) < 1:
        raise ValueError("decision sizes must be ≥ 1 and sum to the number of rows")
    bmax, smallest = max(counts), min(counts)
    if smallest == bmax:
        return x.view(-1, bmax, x.shape[1]), None, bmax
    sizes_t = torch.tensor(counts, dtype=torch.long, device=x.device)
    valid = torch.arange(bmax, device=x.device).unsqueeze(0) < sizes_t.unsqueeze(1)
    xg = x.new_zeros(len(counts), bmax, x.shape[1])
    xg[valid] = x
    return xg, valid, smallest


@contextmanager
def _computing_with(net: SupermaskNet, weffs: Sequence[Tensor]) -> Iterator[list[list]]:
    """Temporarily compute with ``weffs`` and capture every layer's (input, output)."""
    saved = [(m._weff, m._capture) for m in net.masked_layers]
    caps: list[list] = []
    try:
        for m, w in zip(net.masked_layers, weffs, strict=True):
            m._weff = w
            m._capture = []
            caps.append(m._capture)
        yield caps
    finally:
        for m, (w, c) in zip(net.masked_layers, saved, strict=True):
            m._weff, m._capture = w, c



def layer_signals(
    net: SupermaskNet, xg: Tensor, valid: Tensor | None, weffs: Sequence[Tensor],
    objective: str, real: int | None,
) -> tuple[list[Tensor], list[Tensor]]:
    """Per masked layer, its inputs a_l [D, b, in_l] and ∂(Σ_d obj_d)/∂(outputs) δ_l
    [D, b, out_l] for decisions ``xg`` [D, b, F] (``valid`` marks real images), computed with
    the layers' weights set to ``weffs`` (e.g. W ⊙ M̄)."""
    with torch.enable_grad(), _computing_with(net, weffs) as caps:
        x_in = xg.detach().to(net._dtype).requires_grad_(True)
        obj = decision_objective(net._run(x_in, valid), objective, real, valid)
        deltas = list(torch.autograd.grad(obj.sum(), [c[0][1] for c in caps]))
        inputs = [c[0][0].detach() for c in caps]
    return inputs, deltas

"""HopSupSup's tensors: per-unit masks on a fixed BN network, Storkey Hopfield storage of the
masks, their recovery at test time, and One-Shot inference over explicitly stored unit masks.

Everything here is tensor-level (no runs, files or CLI); :mod:`clbench.methods.hopsupsup`
builds the two methods on it.

* :class:`UnitMaskNet`: ``in → 2048 → 2048 → out`` (``bnnet``'s shape) with fixed signed-constant
  weights, the very weights :func:`clbench.supermask.nets.build_model` draws for ``bnnet`` with
  the same seed; after each hidden linear layer a non-affine BatchNorm with batch statistics
  (train and test alike), then the task's mask multiplies each unit's normalised activation,
  then swish. The output layer is not masked. Masks are passed to :meth:`UnitMaskNet.forward`
  (one float vector per hidden layer, or one per decision); :func:`unit_mask` makes them.
* :func:`storkey_update`, :func:`energy`, :func:`memory_patterns`, :func:`store_mask` and
  :func:`total_energy` (per-layer or joint memories), :func:`recall` (plain synchronous sign
  updates, to check storage); the capacity is :func:`clbench.supermask.sizes.storkey_capacity`.
* :func:`recover`: HopSupSup's transductive recovery of one mask from one task's test batches.
* :func:`oneshot_gradients`, :func:`oneshot`: SupSup's One-Shot task inference over stored unit
  masks (objective H).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from clbench.supermask.layers import MaskedLinear, batch_stat_norm, unit_mask
from clbench.supermask.objective import decision_objective, image_objective
from clbench.supermask.sizes import storkey_capacity
from clbench.training import train_steps

__all__ = [
    "Recovery", "UnitMaskNet", "agreement", "energy", "memory_patterns", "oneshot",
    "oneshot_gradients", "recall", "recover", "store_mask", "storkey_capacity", "storkey_update",
    "total_energy", "unit_mask",
]


class UnitMaskNet(nn.Module):
    """Fixed-weight MLP with one mask bit per hidden unit (HopSupSup's ``BNNet``).

    ``hidden`` widths (2048, 2048 for ``bnnet``); the weights are buffers drawn from ``seed``
    in layer order, exactly as :class:`clbench.supermask.nets.SupermaskMLP` draws them, and
    never trained.
    """

    def __init__(self, in_features: int, hidden: Sequence[int], output_size: int,
                 seed: int) -> None:
        super().__init__()
        sizes = (int(in_features), *(int(h) for h in hidden), int(output_size))
        self.widths = tuple(int(h) for h in hidden)
        self.layers = nn.ModuleList(MaskedLinear(a, b) for a, b in zip(sizes, sizes[1:]))
        generator = torch.Generator().manual_seed(int(seed))
        for layer in self.layers:
            layer.init_weight(generator)

    @property
    def device(self) -> torch.device:
        return self.layers[0].weight.device

    def forward(self, x: Tensor, masks: Sequence[Tensor]) -> Tensor:
        """Logits of ``x`` [B, ...] (or per decision [D, b, F]) under per-unit ``masks``: one
        float tensor per hidden layer, [width] (shared) or [D, width] (one per decision)."""
        if len(masks) != len(self.widths):
            raise ValueError(f"{len(masks)} masks for {len(self.widths)} hidden layers")
        h = x.flatten(1) if x.dim() != 3 else x
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            h = F.linear(h, layer.weight)
            if i < last:
                m = masks[i]
                if h.dim() == 3 and m.dim() == 2:
                    m = m.unsqueeze(1)
                h = F.silu(batch_stat_norm(h, fused=False) * m)
        return h


# --------------------------------------------------------------------------- Hopfield storage


def storkey_update(psi: Tensor, x: Tensor) -> Tensor:
    """Store the ±1 pattern ``x`` [d] in ``psi`` [d, d] in place (Storkey's rule, as HopSupSup's
    ``cache_masks``): with h = Ψx, Ψ ← Ψ + (1/d)(x xᵀ − I − x hᵀ − h xᵀ). Returns ``psi``."""
    d = x.numel()
    x = x.to(psi.dtype)
    h = psi @ x
    psi.add_(torch.outer(x, x) - torch.outer(x, h) - torch.outer(h, x), alpha=1.0 / d)
    psi.diagonal().sub_(1.0 / d)
    return psi


def energy(psi: Tensor, s: Tensor) -> Tensor:
    """Hopfield energy E(s) = −½ sᵀΨs of a state ``s`` [d] (differentiable in ``s``)."""
    return -0.5 * (s @ (psi @ s))


def memory_patterns(masks: Sequence[Tensor], sizes: Sequence[int]) -> list[Tensor]:
    """The ±1 patterns a set of memories of ``sizes`` holds for per-layer unit ``masks``: the
    layers' masks concatenated in order, then cut into consecutive pieces of ``sizes`` (one
    piece per layer for per-layer memories, one piece of all units for a joint memory)."""
    x = 2 * torch.cat([m.to(torch.float32) for m in masks]) - 1
    if sum(sizes) != x.numel():
        raise ValueError(f"memories of {list(sizes)} units for masks of {x.numel()} units")
    return list(x.split(list(sizes)))


def store_mask(psis: Sequence[Tensor], masks: Sequence[Tensor]) -> None:
    """Store one mask (one bool or 0/1 vector per layer) in the memories ``psis`` in place,
    each memory its piece of the concatenated mask (:func:`memory_patterns`)."""
    pieces = memory_patterns(masks, [psi.shape[0] for psi in psis])
    for psi, x in zip(psis, pieces, strict=True):
        storkey_update(psi, x)


def total_energy(psis: Sequence[Tensor], masks: Sequence[Tensor]) -> Tensor:
    """Σ over memories of E(2M − 1), each memory holding its piece of the concatenated masks
    (:func:`memory_patterns`); differentiable in ``masks``."""
    pieces = memory_patterns(masks, [psi.shape[0] for psi in psis])
    return sum(energy(psi, x) for psi, x in zip(psis, pieces, strict=True))


def recall(psi: Tensor, s: Tensor, steps: int = 10) -> Tensor:
    """Synchronous sign updates s ← sign(Ψs) (ties to +1) until a fixed point or ``steps``."""
    s = s.to(psi.dtype)
    for _ in range(steps):
        nxt = torch.where(psi @ s >= 0, 1.0, -1.0).to(psi.dtype)
        if torch.equal(nxt, s):
            break
        s = nxt
    return s


# --------------------------------------------------------------------------- recovery


@dataclass
class Recovery:
    """A recovered mask (one bool vector per hidden layer) and how it got there.

    ``steps``: gradient steps taken (one per test batch and pass). ``trace``: fraction of the
    ``reference`` mask's bits the current mask matches, before the first step and after every
    step (empty without a reference).
    """

    masks: list[Tensor]
    steps: int
    trace: list[float] = field(default_factory=list)

    def steps_to(self, level: float) -> int | None:
        """The first step from which at least ``level`` of the bits stay right (None: never,
        or no reference)."""
        held = [n for n in range(len(self.trace)) if min(self.trace[n:]) >= level]
        return held[0] if held else None


def agreement(masks: Sequence[Tensor], reference: Sequence[Tensor]) -> float:
    """Fraction of bits (over all layers) where ``masks`` equal ``reference``."""
    same = sum(int((m.bool() == r.bool()).sum()) for m, r in zip(masks, reference, strict=True))
    return same / sum(r.numel() for r in reference)


def recover(
    net: UnitMaskNet,
    psis: Sequence[Tensor],
    batches: Sequence[Tensor],
    start: Sequence[Tensor],
    *,
    lr: float = 500.0,
    momentum: float = 0.9,
    weight_decay: float = 1e-4,
    gamma: float = 1.5e-3,
    passes: int = 1,
    reference: Sequence[Tensor] | None = None,
) -> Recovery:
    """HopSupSup's recovery of one task's mask from that task's unlabeled test ``batches``.

    Free scores start at ``start`` (the mean of the stored ±1 masks) and take one SGD step per
    batch (``passes`` times over the batches, N steps in all); at step b = 1..N the loss is
    (1 − b/N)·H + γ·(b/N)·Σ_memories E(2M − 1), H the mean entropy of the batch's softmax over
    all outputs, E a memory's Hopfield energy (``psis``: one per layer, or one joint memory over
    the concatenated layers, see :func:`memory_patterns`), M = 1[score ≥ 0] straight-through:
    the entropy pulls the mask towards one that fits these inputs, the energy into the nearest
    stored pattern.
    Transductive: it adapts on the very batches it will then be scored on.
    """
    scores = [nn.Parameter(s.detach().clone().to(net.device)) for s in start]
    optimizer = torch.optim.SGD(scores, lr=lr, momentum=momentum, weight_decay=weight_decay)
    total = passes * len(batches)
    trace: list[float] = []

    def now() -> list[Tensor]:
        return [s.detach() >= 0 for s in scores]

    def losses() -> Iterator[Tensor]:
        for step in range(total):
            x = batches[step % len(batches)]
            weight = (step + 1) / total
            masks = [unit_mask(s) for s in scores]
            entropy = image_objective(net(x, masks)).mean()
            yield (1 - weight) * entropy + gamma * weight * total_energy(psis, masks)
            if reference is not None:  # after the step
                trace.append(agreement(now(), reference))

    if reference is not None:
        trace.append(agreement(now(), reference))
    with torch.enable_grad():
        train_steps(optimizer, losses())
    return Recovery(now(), total, trace)


# --------------------------------------------------------------------------- One-Shot


def oneshot_gradients(net: UnitMaskNet, x: Tensor, stored: Sequence[Tensor]) -> Tensor:
    """∂H_d/∂α_t at α = 1/k for D decisions of b images each: float [D, k]. ``x`` [D, b, ...];
    ``stored``: one float [k, width] tensor of 0/1 masks per hidden layer; H_d the mean output
    entropy of decision d's images.

    The mean mask M̄ = Σ α_t M_t is linear in α, so ∂H_d/∂α_t = Σ_layers ⟨∂H_d/∂M̄_d, M_t⟩: one
    forward/backward with one copy of M̄ per decision, then a [D, width] × [width, k] product.
    """
    d_count, b = x.shape[:2]
    xg = x.reshape(d_count, b, -1).to(net.device)
    with torch.enable_grad():
        means = [m.mean(0).expand(d_count, -1).clone().requires_grad_(True) for m in stored]
        entropy = decision_objective(net(xg, means))  # [D]
        grads = torch.autograd.grad(entropy.sum(), means)
    return sum(gr @ m.T for gr, m in zip(grads, stored, strict=True))


def oneshot(net: UnitMaskNet, x: Tensor, stored: Sequence[Tensor]) -> Tensor:
    """One-Shot task inference (objective H): the argmin over t of :func:`oneshot_gradients`,
    the chosen mask per decision, int64 [D]."""
    return oneshot_gradients(net, x, stored).argmin(1)

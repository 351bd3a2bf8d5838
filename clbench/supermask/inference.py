"""Task inference over supermasks: ∂objective/∂α for many decisions at once from packed bits
(:func:`alpha_gradients`; the objective itself is :mod:`clbench.supermask.objective`), One-Shot
and Binary (:func:`infer_tasks`; One-Shot of single images runs in
:mod:`clbench.supermask.oneshot`), and NNs' float score bank with its allocation rule
(:class:`ScoreBank`, :func:`nns_gradient`, :func:`nns_choice`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from clbench.errors import Incompatible
from clbench.supermask.bits import MB, MaskSource
from clbench.supermask.layers import hard_masks
from clbench.supermask.objective import group_decisions, layer_signals
from clbench.supermask.oneshot import oneshot_argmin
from clbench.supermask.rules import INFERENCES, OBJECTIVES
from clbench.supermask.supernet import SupermaskNet

# --------------------------------------------------------------------------- NNs score bank


class ScoreBank:
    """Float scores of many masks at once, for NNs (masks recomputed from live scores).

    Row i is a list of per-layer Parameters; :meth:`select` makes the net train row i. Cost:
    4·P bytes per row (plus the optimiser's state for rows it has trained, e.g. another 4·P
    for RMSprop). As a :class:`MaskSource` its masks are thresholded (or top-k) live scores.
    Rows are drawn on the CPU and live on the net's device; they follow the net's ``.to()``.
    """

    def __init__(self, net: SupermaskNet) -> None:
        net._require_superposable()
        self.net = net
        self._rows: list[list[nn.Parameter]] = []
        net._banks.add(self)

    @property
    def count(self) -> int:
        """Rows (masks) with scores."""
        return len(self._rows)

    @property
    def version(self) -> None:
        """Scores change in place while training: never cached."""
        return None

    @property
    def nbytes(self) -> int:
        """4·P bytes per row."""
        return 4 * self.net.num_weights * self.count

    def grow(self, rows: int, generator: torch.Generator | None = None) -> None:
        """Add randomly initialised rows until there are ``rows``."""
        while len(self._rows) < rows:
            self._rows.append(
                [nn.Parameter(m.random_scores(generator)) for m in self.net.masked_layers]
            )

    def parameters(self, index: int) -> list[nn.Parameter]:
        """Per-layer score Parameters of row ``index`` (the same objects every call, unless a
        conversion of the net had to replace them, as ``nn.Module`` does for some devices)."""
        return self._rows[index]

    def _apply(self, fn: Any, before: list[Any], after: list[Any]) -> None:
        """Convert every row with ``fn`` (called by the net's ``_apply``). ``before``/``after``:
        the net's attached scores around its own conversion, which already converted them."""
        for row in self._rows:
            for li, p in enumerate(row):
                row[li] = after[li] if p is before[li] else _converted(p, fn)

    def select(self, index: int) -> None:
        """Train row ``index``: the net's mode becomes scores with these Parameters."""
        self.net.attach_scores(self._rows[index])

    @torch.no_grad()
    def layer_masks(
        self, layer: int, start: int, stop: int, dtype: torch.dtype = torch.float32
    ) -> Tensor:
        """Masks of rows ``start:stop`` of one layer from their current scores: [c, n]."""
        scores = torch.stack([r[layer].reshape(-1) for r in self._rows[start:stop]])
        m = self.net.masked_layers[layer]
        return hard_masks(scores, m.mask_kind, m.density).to(dtype)


def _converted(p: nn.Parameter, fn: Any) -> nn.Parameter:
    """``fn`` applied to a Parameter (and its gradient) as ``nn.Module._apply`` does: in place
    when the tensor types allow it, else a new Parameter."""
    grad = p.grad
    with torch.no_grad():
        new = fn(p)
        new_grad = None if grad is None else fn(grad)
    if type(new) in (Tensor, nn.Parameter) and torch._has_compatible_shallow_copy_type(p, new):
        if new is not p:
            p.data = new
        out = p
    else:  # e.g. to/from meta, tensor subclasses
        out = nn.Parameter(new, p.requires_grad)
    if grad is not None and new_grad is not grad:
        out.grad = new_grad
    return out


# --------------------------------------------------------------------------- task inference


def decision_inputs(batches: Iterable[Tensor], infer_batch: int) -> tuple[Tensor, list[int]]:
    """The first ``infer_batch`` images of each batch, concatenated, and each decision's size."""
    firsts = [b[:infer_batch] for b in batches]
    return torch.cat(firsts), [len(f) for f in firsts]


def _check_inference(
    net: SupermaskNet, objective: str, real_classes: int | None, valid_min: int
) -> None:
    if not net.supports_inference:
        raise Incompatible(
            f"{net.config.get('cls')} has per-task BN statistics: task inference needs an MLP "
            "model (lenet, fc1024, bnnet)"
        )
    if objective not in OBJECTIVES:
        raise ValueError(f"objective '{objective}' unknown: H or G")
    if objective == "G":
        if real_classes is None:
            raise ValueError("objective G needs real_classes")
        if net.output_size <= real_classes:
            raise ValueError(
                f"objective G needs superfluous output neurons: output_size {net.output_size} "
                f"≤ real_classes {real_classes}"
            )
    if getattr(net, "batch_norm", False) and valid_min < 2:
        raise Incompatible("bnnet normalises with batch statistics: use infer_batch ≥ 2")


def _check_k(source: MaskSource, k: int) -> None:
    if not 1 <= k <= source.count:
        raise ValueError(f"{k} masks requested, {source.count} available")


class _Unpacked:
    """The first k masks of a source unpacked once (per layer, ``dtype``), reused in one call."""

    def __init__(self, source: MaskSource, k: int, layers: int, dtype: torch.dtype) -> None:
        self._layers = [source.layer_masks(i, 0, k, dtype) for i in range(layers)]
        self.count, self.version = k, None

    def layer_masks(
        self, layer: int, start: int, stop: int, dtype: torch.dtype = torch.float32
    ) -> Tensor:
        return self._layers[layer][start:stop].to(dtype)


def _block_gradients(
    net: SupermaskNet,
    xg: Tensor,
    valid: Tensor | None,
    weffs: Sequence[Tensor],
    objective: str,
    real: int | None,
    source: MaskSource,
    k: int,
    budget: int,
    outer: bool,
) -> Iterator[tuple[int, int, Tensor]]:
    """∂obj_d/∂α_t for one block of decisions, yielded per chunk of masks as (start, stop,
    [D, stop − start]): one forward/backward with ``weffs`` capturing a_l and δ_l, then
    Σ_l Σ_{n∈d} δ_{l,n}ᵀ (W_l ⊙ M_t^l) a_{l,n} as GEMMs; each mask chunk is unpacked once.

    ``outer``: form G_d = W ⊙ Σ_{n∈d} δ_n a_nᵀ once ([D, P]), then G @ Mᵀ (cheap when decisions
    have several images); else per image Y = a (W ⊙ M_t)ᵀ, then δᵀ Y summed per decision.
    """
    d_count, bmax = xg.shape[:2]
    dtype = net._dtype
    itemsize = torch.finfo(dtype).bits // 8
    layers = net.masked_layers
    inputs, deltas = layer_signals(net, xg, valid, weffs, objective, real)
    rows = torch.arange(d_count, device=xg.device).unsqueeze(1).expand(d_count, bmax)
    rows = rows.reshape(-1) if valid is None else rows[valid]
    for li, layer in enumerate(layers):
        out_f, in_f = layer.weight.shape
        if outer:  # padded rows have δ = 0 and add nothing
            g_d = torch.bmm(deltas[li].transpose(1, 2), inputs[li]).reshape(d_count, -1)
            inputs[li], deltas[li] = g_d.mul_(layer.weight.reshape(1, -1)), None
        elif valid is None:
            inputs[li] = inputs[li].reshape(-1, in_f)
            deltas[li] = deltas[li].reshape(-1, out_f)
        else:
            inputs[li], deltas[li] = inputs[li][valid], deltas[li][valid]
    step = max(1, (budget // 4) // (2 * itemsize * max(m.numel for m in layers)))
    for s in range(0, k, step):
        e = min(k, s + step)
        c = e - s
        grad = torch.zeros(d_count, c, dtype=dtype, device=xg.device)
        for li, layer in enumerate(layers):
            masks = source.layer_masks(li, s, e, dtype)
            if outer:
                grad.addmm_(inputs[li], masks.T)
                continue
            out_f, in_f = layer.weight.shape
            wm = (masks * layer.weight.reshape(1, -1)).view(c * out_f, in_f)
            a, delta = inputs[li], deltas[li]
            sub = max(1, (budget // 4) // (itemsize * c * out_f))
            for r in range(0, a.shape[0], sub):
                y = (a[r : r + sub] @ wm.T).view(-1, c, out_f)
                per = torch.bmm(y, delta[r : r + sub].unsqueeze(2)).squeeze(2)
                grad.index_add_(0, rows[r : r + sub], per)
        yield s, e, grad


def _gradients(
    net: SupermaskNet,
    xg: Tensor,
    valid: Tensor | None,
    objective: str,
    real: int | None,
    source: MaskSource,
    k: int,
    coeffs: Tensor | None,
    budget: int,
    strategy: str,
    argmin: bool = False,
    *,
    n_valid: int,
) -> Tensor:
    """All gradients [D, k], or (``argmin``) only the argmin per decision [D] (memory O(D));
    ``n_valid``: the number of real (unpadded) images."""
    d_count, bmax = xg.shape[:2]
    outer = strategy == "outer" or (strategy == "auto" and n_valid >= 2 * d_count)
    layers = net.masked_layers
    itemsize = torch.finfo(net._dtype).bits // 8
    per_decision = bmax * itemsize * sum(m.weight.shape[1] + 2 * m.weight.shape[0] for m in layers)
    per_decision += itemsize * net.num_weights * ((coeffs is not None) + outer)
    mean = net._mean_weights(source, k) if coeffs is None else None
    block = max(1, (budget // 2) // per_decision)
    cache = k * net.num_weights  # masks reused by several blocks: unpack once (float or uint8)
    if block < d_count and cache <= budget // 4:
        as_float = cache * itemsize <= budget // 4
        source = _Unpacked(source, k, len(layers), net._dtype if as_float else torch.uint8)
        cache *= itemsize if as_float else 1
        block = max(1, (budget // 2 - cache) // per_decision)
    if argmin:
        best = torch.full((d_count,), math.inf, dtype=net._dtype, device=xg.device)
        result = torch.zeros(d_count, dtype=torch.long, device=xg.device)
    else:
        result = torch.zeros(d_count, k, dtype=net._dtype, device=xg.device)
    for b0 in range(0, d_count, block):
        b1 = min(d_count, b0 + block)
        if mean is None:
            with torch.no_grad():
                weffs = net._mixed_weights(source, coeffs[b0:b1], k)  # type: ignore[index]
        else:
            weffs = mean
        v = None if valid is None else valid[b0:b1]
        chunks = _block_gradients(
            net, xg[b0:b1], v, weffs, objective, real, source, k, budget, outer
        )
        for s, e, g in chunks:
            if not argmin:
                result[b0:b1, s:e] = g
                continue
            low, where = g.min(1)
            better = low < best[b0:b1]
            best[b0:b1] = torch.where(better, low, best[b0:b1])
            result[b0:b1] = torch.where(better, where + s, result[b0:b1])
    return result


def alpha_gradients(
    net: SupermaskNet,
    x: Tensor,
    sizes: int | Sequence[int] = 1,
    *,
    objective: str = "H",
    real_classes: int | None = None,
    source: MaskSource | None = None,
    num_masks: int | None = None,
    candidates: Tensor | None = None,
    memory_mb: int = 384,
    strategy: str = "auto",
) -> Tensor:
    """∂obj_d/∂α_t for D decisions at once: float [D, k].

    ``x`` [N, ...]: the decisions' images, consecutive; ``sizes``: images per decision (an int
    for equal sizes, or a list). α_d is uniform over all k masks (M̄ cached per store version),
    or over ``candidates`` [D, k] (bool; per-decision M̄_d = C_d @ masks). ``source``: the store
    (default) or a :class:`ScoreBank`; ``num_masks``: use only its first k masks. Objective H:
    entropy of softmax over all outputs; G: logsumexp with the first ``real_classes`` logits
    detached. Both averaged over the decision's images. ``strategy``: "auto", "outer"
    (δaᵀ per decision, cheaper when decisions have several images) or "rows" (per image GEMM).
    Peak extra memory ≈ ``memory_mb``. Gradients are float64 if the net is.

    Cost: one forward/backward of the N images, plus N·k·P multiply-adds ("rows") or
    N·P + D·k·P ("outer"); with ``candidates`` also D·k·P to build the M̄_d (D·P floats held
    per block of decisions). Masks are unpacked once per call when one block holds all decisions.
    """
    if strategy not in ("auto", "outer", "rows"):
        raise ValueError(f"strategy '{strategy}' unknown: auto, outer or rows")
    source = net.store if source is None else source
    k = source.count if num_masks is None else int(num_masks)
    _check_k(source, k)
    xg, valid, smallest = group_decisions(x.to(net._device), sizes)
    _check_inference(net, objective, real_classes, smallest)
    coeffs = None
    if candidates is not None:
        cand = candidates.to(net._device, net._dtype)
        coeffs = cand / cand.sum(1, keepdim=True)
    return _gradients(
        net, xg, valid, objective, real_classes, source, k, coeffs, memory_mb * MB, strategy,
        n_valid=x.shape[0],
    )


def infer_tasks(
    net: SupermaskNet,
    x: Tensor,
    sizes: int | Sequence[int] = 1,
    *,
    method: str = "oneshot",
    objective: str = "H",
    real_classes: int | None = None,
    source: MaskSource | None = None,
    num_masks: int | None = None,
    memory_mb: int = 384,
) -> Tensor:
    """The inferred mask index per decision: int64 [D].

    One-Shot: argmin_t ∂obj/∂α_t at α = 1/k. Binary: start uniform, keep the candidates whose
    gradient ≤ the lower median among the current ones, repeat (at most ⌊log2 k⌋+1 rounds, all
    undecided decisions batched), then the smallest last gradient among what is left.
    Binary costs one :func:`alpha_gradients` per round, with per-decision M̄_d after the first:
    meant for few decisions of many images (e.g. full-batch RotatedMNIST), slow for
    thousands of single-image decisions. One-Shot keeps only a running argmin (memory O(D)).
    """
    if method not in INFERENCES:
        raise ValueError(f"inference '{method}' unknown: oneshot or binary")
    source = net.store if source is None else source
    k = source.count if num_masks is None else int(num_masks)
    kw: dict[str, Any] = {
        "objective": objective,
        "real_classes": real_classes,
        "source": source,
        "num_masks": k,
        "memory_mb": memory_mb,
    }
    xg, valid, smallest = group_decisions(x.to(net._device), sizes)
    _check_k(source, k)
    _check_inference(net, objective, real_classes, smallest)
    if method == "oneshot":
        budget = memory_mb * MB
        if x.shape[0] < 2 * xg.shape[0]:  # about one image per decision
            return oneshot_argmin(net, xg, valid, objective, real_classes, source, k, budget)
        return _gradients(
            net, xg, valid, objective, real_classes, source, k, None, budget, "auto",
            argmin=True, n_valid=x.shape[0],
        )
    d_count = xg.shape[0]
    device = xg.device
    if k == 1:
        return torch.zeros(d_count, dtype=torch.long, device=device)
    cand = torch.ones(d_count, k, dtype=torch.bool, device=device)
    last = torch.zeros(d_count, k, dtype=net._dtype, device=device)
    if valid is None:
        rows_sizes = torch.full((d_count,), xg.shape[1], device=device)
    else:
        rows_sizes = valid.sum(1)
    for _ in range(int(math.log2(k)) + 1):
        counts = cand.sum(1)
        active = (counts > 1).nonzero().squeeze(1)
        if len(active) == 0:
            break
        sub_x = xg[active].reshape(-1, xg.shape[2])
        sub_sizes: int | list[int] = xg.shape[1]
        if valid is not None:
            sub_x = xg[active][valid[active]]
            sub_sizes = rows_sizes[active].tolist()
        sub_cand = cand[active]
        every = bool(sub_cand.all())  # first round: the cached mean mask, no per-decision M̄_d
        g = alpha_gradients(net, sub_x, sub_sizes, candidates=None if every else sub_cand, **kw)
        g = g.masked_fill(~sub_cand, math.inf)
        median = g.sort(1).values.gather(1, ((counts[active] - 1) // 2).unsqueeze(1))
        cand[active] &= g <= median
        last[active] = g
    return last.masked_fill(~cand, math.inf).argmin(1)


def nns_gradient(
    net: SupermaskNet,
    bank: ScoreBank,
    x: Tensor,
    num_masks: int,
    generator: torch.Generator | None = None,
) -> Tensor:
    """g [m] for NNs: ∂H/∂α at α = 1/m over the bank's first m masks (grown with random rows
    if needed), H the mean entropy over the whole training batch ``x``."""
    bank.grow(num_masks, generator)
    return alpha_gradients(net, x, [len(x)], objective="H", source=bank, num_masks=num_masks)[0]


def nns_choice(g: Tensor, eps: float = 2.0**-3) -> int | None:
    """The NNs rule: None (allocate a new mask) if m·max softmax(−g) < 1 + eps, else argmax."""
    nu = torch.softmax(-g, 0)
    if len(g) * float(nu.max()) < 1 + eps:
        return None
    return int(nu.argmax())



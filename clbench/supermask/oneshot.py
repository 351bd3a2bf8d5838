"""One-Shot among many stored masks, at close to the arithmetic it needs.

For single-image decisions, ∂obj_n/∂α_t = Σ_l Σ_j a_{l,n,j} Σ_i δ_{l,n,i} W_{l,ij} M^l_{t,ij}.
Two things make this cheaper than a dense product with every mask:

* **Masks prepared once.** :class:`PreparedMasks` keeps the first k masks of a source in an
  input-major bit layout (weight (i, j) at row j·out + i, the k masks packed along the row),
  so that column j of every mask, [out, k], unpacks with one table lookup into a contiguous
  GEMM operand; and Σ_j W_ij M_{t,ij} per mask. It is built once per store version and
  reused by every call until a mask is added (all decisions of an evaluation point share it).
* **Inputs taken column by column.** Each layer's input is c + s with c its most common value
  (after normalisation, a raw MNIST image's background; 0 after a ReLU) and s sparse: the c
  part is c·δᵀ(Σ_j W_ij M_t,ij), one small product per mask, and column j of s only involves
  the images where it is non-zero: Σ_j (δ_{rows} ⊙ W_{:,j} ⊙ s_{rows,j}) @ M_j. About 80 %
  of a permuted MNIST image's pixels are background, and the first layer holds most weights.

The sums run in another order than the dense product, so gradients agree to rounding:
answers differ only where a decision's two best masks are tied to about 1e-6 (a test holds it
to the answers of the dense code on real images).
"""

from __future__ import annotations

import math
import weakref
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from clbench.supermask.objective import layer_signals

if TYPE_CHECKING:
    from clbench.supermask.bits import MaskSource
    from clbench.supermask.supernet import SupermaskNet

_BIT_WEIGHTS = (1, 2, 4, 8, 16, 32, 64, 128)
_DENSE = 0.6  # a layer whose inputs differ from their common value this often is taken densely
_prepared: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # source → PreparedMasks


class PreparedMasks:
    """The first ``k`` masks of ``source`` for One-Shot: per layer, bits in input-major order
    packed along the masks ([in·out, ⌈k/8⌉] uint8) and Σ_j W_ij M_t,ij ([k, out])."""

    def __init__(self, net: SupermaskNet, source: MaskSource, k: int, budget: int) -> None:
        self.key = (source.version, k, net._dtype, net._device)
        self.bits: list[Tensor] = []
        self.rowsums: list[Tensor] = []
        weights = torch.tensor(_BIT_WEIGHTS, dtype=torch.uint8, device=net._device)
        for li, layer in enumerate(net.masked_layers):
            out_f, in_f = layer.weight.shape
            packed = torch.zeros(in_f * out_f, -(-k // 8), dtype=torch.uint8, device=net._device)
            rowsums = torch.zeros(k, out_f, dtype=net._dtype, device=net._device)
            step = max(8, budget // (8 * layer.numel) // 8 * 8)
            for s in range(0, k, step):
                e = min(k, s + step)
                m = source.layer_masks(li, s, e, torch.uint8)
                rowsums[s:e] = (m.view(e - s, out_f, in_f) * layer.weight).sum(2)
                if (e - s) % 8:
                    m = torch.cat([m, m.new_zeros(8 - (e - s) % 8, m.shape[1])])
                byte = m.view(-1, 8, out_f, in_f).mul_(weights.view(1, 8, 1, 1))
                byte = byte.sum(1, dtype=torch.uint8)  # [⌈c/8⌉, out, in]
                packed[:, s // 8 : s // 8 + byte.shape[0]] = byte.permute(2, 1, 0).reshape(
                    in_f * out_f, -1)
            self.bits.append(packed)
            self.rowsums.append(rowsums)
        table = (torch.arange(256).unsqueeze(1) >> torch.arange(8)) & 1
        self.table = table.to(net._device, net._dtype)

    def floats(self, layer: int, start: int, stop: int) -> Tensor:
        """Masks ``start:stop`` (``start`` a multiple of 8) of one layer, [in·out, stop − start],
        row j·out + i holding weight (i, j) of every mask."""
        b = self.bits[layer][:, start // 8 : -(-stop // 8)]
        return self.table[b.reshape(-1).long()].view(b.shape[0], -1)[:, : stop - start]


def prepared_masks(net: SupermaskNet, source: MaskSource, k: int, budget: int) -> PreparedMasks:
    """The source's prepared masks, rebuilt only when its masks, k, dtype or device change."""
    key = (source.version, k, net._dtype, net._device)
    cached = _prepared.get(source)
    if source.version is not None and cached is not None and cached.key == key:
        return cached
    prepared = PreparedMasks(net, source, k, budget)
    if source.version is not None:
        _prepared[source] = prepared
    return prepared


def _columns(a: Tensor) -> tuple[float, list[tuple[int, Tensor, Tensor]] | None]:
    """The input's most common value c (from a sample) and, per column, the rows where it
    differs from c with their differences; None instead of columns when most entries differ."""
    values, counts = a[: min(len(a), 64)].reshape(-1).unique(return_counts=True)
    c = float(values[counts.argmax()])
    differs = a != c
    if float(differs.float().mean()) > _DENSE:
        return 0.0, None
    shifted = a - c if c != 0.0 else a
    columns = []
    for j, where in enumerate(differs.T):
        rows = where.nonzero().squeeze(1)
        if len(rows):
            columns.append((j, rows, shifted[rows, j].unsqueeze(1)))
    return c, columns


def oneshot_argmin(
    net: SupermaskNet, xg: Tensor, valid: Tensor | None, objective: str, real: int | None,
    source: MaskSource, k: int, budget: int,
) -> Tensor:
    """argmin_t ∂obj_d/∂α_t at α = 1/k for decisions ``xg`` [D, b, F] (``valid`` marks real
    images): int64 [D]. Peak extra memory ≈ ``budget`` bytes plus the prepared masks
    (k·P/8 bytes)."""
    d_count, bmax = xg.shape[:2]
    dtype, device = net._dtype, xg.device
    layers = net.masked_layers
    prepared = prepared_masks(net, source, k, budget // 4)
    weffs = net._mean_weights(source, k)
    width = sum(m.weight.shape[0] + m.weight.shape[1] for m in layers)
    step = max(8, (budget // 2) // (torch.finfo(dtype).bits // 8 * net.num_weights) // 8 * 8)
    per_decision = bmax * width * 16 + step * 8
    block = max(1, (budget // 2) // per_decision)
    best = torch.full((d_count,), math.inf, dtype=dtype, device=device)
    answer = torch.zeros(d_count, dtype=torch.long, device=device)
    for b0 in range(0, d_count, block):
        b1 = min(d_count, b0 + block)
        v = None if valid is None else valid[b0:b1]
        inputs, deltas = layer_signals(net, xg[b0:b1], v, weffs, objective, real)
        owner = torch.arange(b1 - b0, device=device).unsqueeze(1).expand(b1 - b0, bmax)
        owner = owner.reshape(-1) if v is None else owner[v]
        single = bmax == 1  # one image per decision: rows are decisions
        plan = []
        for layer, a, delta in zip(layers, inputs, deltas, strict=True):
            out_f, in_f = layer.weight.shape
            a = a.reshape(-1, in_f) if v is None else a[v]
            delta = delta.reshape(-1, out_f) if v is None else delta[v]
            plan.append((*_columns(a), a, delta))
        for s in range(0, k, step):
            e = min(k, s + step)
            grad = torch.zeros(b1 - b0, e - s, dtype=dtype, device=device)
            for li, (layer, (c, columns, a, delta)) in enumerate(zip(layers, plan, strict=True)):
                out_f = layer.weight.shape[0]
                masks = prepared.floats(li, s, e)
                w_t = layer.weight.T
                if columns is None:
                    for j in range(a.shape[1]):
                        left = delta * w_t[j] * a[:, j : j + 1]
                        column = masks[j * out_f : (j + 1) * out_f]
                        if single:
                            grad.addmm_(left, column)
                        else:
                            grad.index_add_(0, owner, left @ column)
                    continue
                if c != 0.0 and single:
                    grad.addmm_(delta, prepared.rowsums[li][s:e].T, alpha=c)
                elif c != 0.0:
                    grad.index_add_(0, owner, delta @ prepared.rowsums[li][s:e].T, alpha=c)
                for j, rows, values in columns:
                    left = delta[rows].mul_(w_t[j]).mul_(values)
                    grad.index_add_(0, owner[rows], left @ masks[j * out_f : (j + 1) * out_f])
            low, where = grad.min(1)
            better = low < best[b0:b1]
            best[b0:b1] = torch.where(better, low, best[b0:b1])
            answer[b0:b1] = torch.where(better, where + s, answer[b0:b1])
    return answer

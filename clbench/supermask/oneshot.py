"""One-Shot among many stored masks, at close to the arithmetic it needs.

For single-image decisions, ∂obj_n/∂α_t = Σ_l Σ_j a_{l,n,j} Σ_i δ_{l,n,i} W_{l,ij} M^l_{t,ij}.
Two things make this cheaper than a dense product with every mask:

* **Masks prepared once.** :class:`PreparedMasks` keeps the first k masks of a source in an
  input-major bit layout (weight (i, j) at row j·out + i, the k masks packed along the row),
  so that column j of every mask, [out, k], unpacks with one table lookup (``index_select``,
  into a reused buffer) into a contiguous GEMM operand; and Σ_j W_ij M_{t,ij} per mask. It is
  built once per store version and reused by every call until a mask is added (all decisions
  of an evaluation point share it).
* **Inputs taken column by column.** Each layer's input is c + s with c its most common value
  (after normalisation, a raw MNIST image's background; 0 after a ReLU) and s sparse: the c
  part is c·δᵀ(Σ_j W_ij M_t,ij), one small product per mask, and column j of s only involves
  the images where it is non-zero: Σ_j (δ_{rows} ⊙ W_{:,j} ⊙ s_{rows,j}) @ M_j. About 80 %
  of a permuted MNIST image's pixels are background, and the first layer holds most weights.
  Columns with similar numbers of such images are grouped (padding ≤ 1/4) so that a group is
  one batched product over all k masks at once and one ``index_add_`` into contiguous rows:
  many small products, or adds into a slice of the masks, measured about twice as slow.

The sums run in another order than the dense product, so gradients agree to rounding:
answers differ only where a decision's two best masks are tied to about 1e-6 (a test holds it
to the answers of the dense code on real images).
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from clbench.supermask.objective import layer_signals

if TYPE_CHECKING:
    from clbench.supermask.bits import MaskSource
    from clbench.supermask.supernet import SupermaskNet

_BIT_WEIGHTS = (1, 2, 4, 8, 16, 32, 64, 128)
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

    def columns(self, layer: int, cols: Tensor, start: int, stop: int, buffer: Tensor) -> Tensor:
        """Masks ``start:stop`` (``start`` a multiple of 8) at the weights of input columns
        ``cols`` of one layer: [columns, out, stop − start] floats, unpacked into ``buffer``
        (flat, large enough: reusing it spares the pages of a new allocation every call)."""
        out_f = self.rowsums[layer].shape[1]
        b = self.bits[layer].view(-1, out_f, self.bits[layer].shape[1])
        b = b[cols, :, start // 8 : -(-stop // 8)]
        floats = _room(buffer, b.numel() * 8).view(-1, 8)
        torch.index_select(self.table, 0, b.reshape(-1).long(), out=floats)
        return floats.view(*b.shape[:2], -1)[:, :, : stop - start]


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


def _groups(
    differs: Tensor, out_f: int, masks: int, cap: int, size: int
) -> list[tuple[Tensor, int]]:
    """The input columns with any entry off the common value, most such entries first, in
    groups of similar count: (columns, rows of the fullest) each; no column under 3/4 of the
    fullest's rows, and at most ``cap`` bytes (``size`` per float) for each of a group's left
    operands [columns, rows, out], masks [columns, out, masks] and products
    [columns, rows, masks]."""
    counts = differs.sum(0)
    order = counts.argsort(descending=True, stable=True)
    sizes = counts[order].tolist()
    unpacked = out_f * -(-masks // 8) * 8
    groups = []
    first = 0
    while first < len(sizes) and sizes[first] > 0:
        rows = sizes[first]
        width = max(1, cap // (size * max(rows * out_f, unpacked, rows * masks)))
        last = first + 1
        while last < len(sizes) and last - first < width and sizes[last] * 4 >= rows * 3:
            last += 1
        groups.append((order[first:last], rows))
        first = last
    return groups


def _room(buffer: Tensor, n: int) -> Tensor:
    """The first ``n`` entries of a flat ``buffer``, or a new one if it is shorter."""
    return buffer[:n] if n <= buffer.numel() else buffer.new_empty(n)


def _common_value(a: Tensor) -> float:
    """The most common entry of a layer's input (from a sample): after normalisation a raw
    MNIST image's background, after a ReLU 0."""
    values, counts = a[: min(len(a), 64)].reshape(-1).unique(return_counts=True)
    return float(values[counts.argmax()])


def _left_operands(
    a: Tensor, c: float, delta: Tensor, weight: Tensor, masks: int, cap: int, size: int
) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
    """Per group of input columns j of s = a − c: the columns, the rows where s is non-zero
    ([columns, rows] image indices, padded with a zero row past the end) and the left operands
    δ ⊙ W[:, j] ⊙ s[:, j] ([columns, rows, out] floats, zero on padding), one group at a time."""
    n, out_f = delta.shape
    differs = a != c
    shifted = torch.cat([a - c, a.new_zeros(1, a.shape[1])])
    delta = torch.cat([delta, delta.new_zeros(1, out_f)])
    for cols, rows in _groups(differs, out_f, masks, cap, size):
        hit = differs[:, cols].T  # [columns, n]
        first = hit.to(torch.uint8).sort(dim=1, descending=True, stable=True).indices[:, :rows]
        where = torch.where(hit.gather(1, first), first, n)
        left = delta[where] * weight.T[cols].unsqueeze(1)
        left *= shifted[where, cols.unsqueeze(1)].unsqueeze(2)
        yield cols, where, left


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
    cap = budget // 8  # each of: signals, α-gradients, left operands, masks, products
    size = torch.finfo(dtype).bits // 8
    width = sum(m.weight.shape[0] + m.weight.shape[1] for m in layers)
    block = max(1, cap // (4 * size * bmax * width))
    best = torch.full((d_count,), math.inf, dtype=dtype, device=device)
    answer = torch.zeros(d_count, dtype=torch.long, device=device)
    unpacked = torch.empty(cap // size, dtype=dtype, device=device)  # reused: see columns()
    products = torch.empty(cap // size, dtype=dtype, device=device)
    for b0 in range(0, d_count, block):
        b1 = min(d_count, b0 + block)
        v = None if valid is None else valid[b0:b1]
        inputs, deltas = layer_signals(net, xg[b0:b1], v, weffs, objective, real)
        owner = torch.arange(b1 - b0, device=device).unsqueeze(1).expand(b1 - b0, bmax)
        owner = owner.reshape(-1) if v is None else owner[v]
        owner = torch.cat([owner, owner.new_tensor([b1 - b0])])  # padding → a spare row
        plan = []
        for layer, a, delta in zip(layers, inputs, deltas, strict=True):
            out_f, in_f = layer.weight.shape
            a = a.reshape(-1, in_f) if v is None else a[v]
            delta = delta.reshape(-1, out_f) if v is None else delta[v]
            plan.append((a, _common_value(a), delta))
        step = min(k, max(8, cap // (size * (b1 - b0 + 1)) // 8 * 8))
        for s in range(0, k, step):
            e = min(k, s + step)
            grad = torch.zeros(b1 - b0 + 1, e - s, dtype=dtype, device=device)
            for li, (layer, (a, c, delta)) in enumerate(zip(layers, plan, strict=True)):
                if c != 0.0:
                    grad[:-1].index_add_(0, owner[:-1], delta @ prepared.rowsums[li][s:e].T,
                                         alpha=c)
                for cols, where, left in _left_operands(a, c, delta, layer.weight, e - s, cap,
                                                         size):
                    masks = prepared.columns(li, cols, s, e, unpacked)
                    part = _room(products, where.numel() * (e - s)).view(*where.shape, e - s)
                    torch.bmm(left, masks, out=part)
                    grad.index_add_(0, owner[where.reshape(-1)], part.view(-1, e - s))
            low, arg = grad[:-1].min(1)
            better = low < best[b0:b1]
            best[b0:b1] = torch.where(better, low, best[b0:b1])
            answer[b0:b1] = torch.where(better, arg + s, answer[b0:b1])
    return answer

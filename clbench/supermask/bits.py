"""Bit-packed masks: packing and unpacking, and the packed store of every finished task's mask.

Bits are packed most-significant-bit first (as ``numpy.packbits``); a task's row is the flat
concatenation of all layers' masks in :attr:`SupermaskNet.masked_layers` order, each layer
flattened in PyTorch's weight layout ([out, in] or [out, in, kh, kw]).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

MB = 1 << 20  # working-memory budgets are given in MiB



@functools.lru_cache(maxsize=16)
def _bit_table(dtype: torch.dtype, device: torch.device) -> Tensor:
    """[256, 8] table on ``device``: the bits of every byte value, MSB first."""
    values = torch.arange(256, device=device).unsqueeze(1) >> torch.arange(7, -1, -1, device=device)
    return (values & 1).to(dtype)


def pack_bits(mask: Tensor) -> Tensor:
    """Pack a boolean/0-1 tensor [..., n] into uint8 [..., ⌈n/8⌉], MSB first, zero padded."""
    n = mask.shape[-1]
    pad = (-n) % 8
    bits = mask.to(torch.uint8)
    if pad:
        bits = F.pad(bits, (0, pad))
    bits = bits.reshape(*mask.shape[:-1], -1, 8)
    weights = torch.tensor([128, 64, 32, 16, 8, 4, 2, 1], dtype=torch.uint8, device=mask.device)
    return (bits * weights).sum(-1, dtype=torch.uint8)


def unpack_bits(packed: Tensor, n: int, dtype: torch.dtype = torch.bool) -> Tensor:
    """Inverse of :func:`pack_bits`: uint8 [..., m] → [..., n] of ``dtype`` (n ≤ 8m)."""
    lead = packed.shape[:-1]
    if dtype.is_floating_point:
        table = _bit_table(dtype, packed.device)
        flat = F.embedding(packed.reshape(-1, packed.shape[-1]).int(), table)
    else:
        shifts = torch.arange(7, -1, -1, dtype=torch.uint8, device=packed.device)
        flat = ((packed.unsqueeze(-1) >> shifts) & 1).to(dtype)
    return flat.reshape(*lead, -1)[..., :n]


class MaskSource(Protocol):
    """Anything that yields masks layer by layer: :class:`PackedMaskStore`, :class:`ScoreBank`.

    ``version`` is None when the masks may change without notice (no caching).
    """

    @property
    def count(self) -> int: ...

    @property
    def version(self) -> int | None: ...

    def layer_masks(
        self, layer: int, start: int, stop: int, dtype: torch.dtype = torch.float32
    ) -> Tensor: ...


class PackedMaskStore:
    """Finished masks of all tasks: one row of ⌈P/8⌉ bytes per task, in one growing tensor.

    Capacity doubles when full (amortised O(1) appends). ``version`` changes on every append.
    The rows live on ``device`` (see :meth:`to`; a :class:`SupermaskNet` keeps its store on the
    device of its weights); unpacked masks are made there.
    """

    def __init__(
        self, layer_sizes: Sequence[int], device: torch.device | str | None = None
    ) -> None:
        self.layer_sizes = tuple(int(s) for s in layer_sizes)
        self.offsets = tuple(sum(self.layer_sizes[:i]) for i in range(len(self.layer_sizes)))
        self.num_bits = sum(self.layer_sizes)
        self.row_bytes = (self.num_bits + 7) // 8
        device = torch.device("cpu") if device is None else torch.device(device)
        self._bits = torch.zeros(0, self.row_bytes, dtype=torch.uint8, device=device)
        self._count = 0
        self._version = 0

    @property
    def device(self) -> torch.device:
        """Where the packed rows live."""
        return self._bits.device

    def to(self, device: torch.device | str) -> PackedMaskStore:
        """Move the packed rows to ``device`` (in place; the version is unchanged)."""
        self._bits = self._bits.to(device)
        return self

    @property
    def count(self) -> int:
        """Number of stored masks."""
        return self._count

    @property
    def version(self) -> int:
        """Changes whenever the stored masks change."""
        return self._version

    @property
    def packed(self) -> Tensor:
        """The stored rows, uint8 [count, row_bytes] (a view)."""
        return self._bits[: self._count]

    @property
    def nbytes(self) -> int:
        """Bytes of the packed masks: count·⌈P/8⌉."""
        return self._count * self.row_bytes

    def append(self, mask: Tensor) -> int:
        """Store a flat mask of P booleans; returns its index."""
        if mask.numel() != self.num_bits:
            raise ValueError(f"mask has {mask.numel()} entries, the store expects {self.num_bits}")
        return self.append_packed(pack_bits(mask.reshape(-1).bool()))

    def append_packed(self, row: Tensor) -> int:
        """Store an already packed row (uint8 [row_bytes]); returns its index."""
        if self._count == self._bits.shape[0]:
            grown = torch.zeros(
                max(4, 2 * self._count), self.row_bytes, dtype=torch.uint8, device=self.device
            )
            grown[: self._count] = self._bits[: self._count]
            self._bits = grown
        self._bits[self._count] = row.to(self.device, torch.uint8)
        self._count += 1
        self._version += 1
        return self._count - 1

    def mask(self, index: int) -> Tensor:
        """Stored mask ``index`` as a flat bool tensor [P]."""
        self._check(index, index + 1)
        return unpack_bits(self._bits[index], self.num_bits)

    def layer_masks(
        self, layer: int, start: int, stop: int, dtype: torch.dtype = torch.float32
    ) -> Tensor:
        """Masks ``start:stop`` of one layer, unpacked: [stop−start, n_layer] of ``dtype``."""
        self._check(start, stop)
        lo = self.offsets[layer]
        n = self.layer_sizes[layer]
        b0, b1 = lo // 8, (lo + n + 7) // 8
        bits = unpack_bits(self._bits[start:stop, b0:b1], (b1 - b0) * 8, dtype)
        return bits[:, lo - 8 * b0 : lo - 8 * b0 + n]

    def layer_counts(self, layer: int) -> Tensor:
        """Kept weights of ``layer`` in every stored mask: int64 [count]."""
        n = self.layer_sizes[layer]
        step = max(1, (64 * MB) // max(n, 1))
        parts = [
            self.layer_masks(layer, s, min(s + step, self._count), torch.uint8).sum(1)
            for s in range(0, self._count, step)
        ]
        return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.int64, device=self.device)

    def load(self, packed: Tensor) -> None:
        """Replace the content with rows uint8 [count, row_bytes] (copied to the store's device)."""
        if packed.dim() != 2 or packed.shape[1] != self.row_bytes:
            raise ValueError(f"expected [count, {self.row_bytes}] uint8 rows")
        self._bits = packed.to(self.device, torch.uint8, copy=True)
        self._count = packed.shape[0]
        self._version += 1

    def _check(self, start: int, stop: int) -> None:
        if not 0 <= start <= stop <= self._count:
            raise IndexError(f"masks {start}:{stop} requested, {self._count} stored")



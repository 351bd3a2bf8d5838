"""Supermasks in Superposition (SupSup): mask layers, fixed-weight models and task inference.

Everything tensor-level that SupSup needs, and nothing about runs, files or the CLI.

* Models by name (:func:`build_model`): bias-free, every conv/linear layer masked (output layer
  included). Weights are signed constants sign(w)·√2/√fan_in of PyTorch's default init, drawn
  from the model's own generator seeded by ``seed`` (buffers, never trained, not in the
  ``state_dict``; independent of how many tasks or scores are ever created).
* Masks: ``"threshold"`` (M = 1[score ≥ 0]) or ``"topk"`` (edge-popup: top ``density`` of
  |score| per layer, or the ER budget ``er_scale``), both straight-through. Only the task being
  trained has float scores; finished masks live bit-packed in one :class:`PackedMaskStore`.
* Modes: :meth:`SupermaskNet.use_scores` (train), :meth:`~SupermaskNet.use_task` (stored mask i),
  :meth:`~SupermaskNet.use_alphas` (superposition), :meth:`~SupermaskNet.use_mean`.
* Task inference (MLP models only): :func:`alpha_gradients`, :func:`infer_tasks` (One-Shot and
  Binary, objectives H and G), computed for many decisions at once from packed bits.
* NNs: :class:`ScoreBank` (float scores per allocated mask), :func:`nns_gradient`,
  :func:`nns_choice`.
* Bytes: :func:`bits_bytes`, :func:`sparse_bytes`.

Bits are packed most-significant-bit first (as ``numpy.packbits``); a task's row is the flat
concatenation of all layers' masks in :attr:`SupermaskNet.masked_layers` order, each layer
flattened in PyTorch's weight layout ([out, in] or [out, in, kh, kw]).
"""

from __future__ import annotations

import functools
import itertools
import math
import weakref
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from clbench.errors import Incompatible

MODEL_NAMES = ("lenet", "fc1024", "gemresnet18", "resnet50", "bnnet")
MASK_KINDS = ("threshold", "topk")
INITS = ("random", "transfer")
OBJECTIVES = ("H", "G")
INFERENCES = ("oneshot", "binary")
SEED_BYTES = 8
_MB = 1 << 20


# --------------------------------------------------------------------------- bit packing


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
        step = max(1, (64 * _MB) // max(n, 1))
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


# --------------------------------------------------------------------------- masks and layers


def kept_count(numel: int, density: float) -> int:
    """Weights kept by a top-k mask: n − ⌊(1 − density)·n⌋ (the official GetSubnet rule)."""
    return numel - math.floor((1.0 - density) * numel)


def er_density(c_out: int, c_in: int, kernel: int | tuple[int, int], er_scale: int) -> float:
    """ER layer-wise budget: min(0.5, S·(c_out + c_in) / (c_out·c_in·k_h·k_w))."""
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    return min(0.5, er_scale * (c_out + c_in) / (c_out * c_in * kh * kw))


def hard_masks(scores: Tensor, kind: str, density: float | None) -> Tensor:
    """Binary masks (bool) of score rows [c, n]: threshold at 0, or top-k of |score| per row."""
    if kind == "threshold":
        return scores >= 0
    kept = kept_count(scores.shape[1], float(density))  # type: ignore[arg-type]
    idx = scores.abs().topk(kept, dim=1, sorted=False).indices
    return torch.zeros(scores.shape, dtype=torch.bool, device=scores.device).scatter_(1, idx, True)


class _ThresholdWeight(torch.autograd.Function):
    """W ⊙ 1[s ≥ 0] in one pass; straight-through: ∂L/∂s = ∂L/∂M = ∂L/∂(W⊙M) ⊙ W."""

    @staticmethod
    def forward(ctx: Any, scores: Tensor, weight: Tensor) -> Tensor:
        ctx.save_for_backward(weight)
        return torch.where(scores >= 0, weight, 0.0)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        (weight,) = ctx.saved_tensors
        return grad * weight, None


class _TopKSTE(torch.autograd.Function):
    """M = 1 on the ``kept`` largest entries; gradient passed straight through."""

    @staticmethod
    def forward(ctx: Any, magnitude: Tensor, kept: int) -> Tensor:
        flat = magnitude.reshape(-1)
        out = torch.zeros_like(flat)
        out[flat.topk(kept, sorted=False).indices] = 1
        return out.view_as(magnitude)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return grad, None


class MaskedLayer(nn.Module):
    """A bias-free layer computing with W ⊙ M: W a fixed buffer, M from scores or set by the net.

    ``scores`` (Parameter or None) is the task being trained; ``_weff`` (set by the network's
    modes) overrides it with a precomputed W ⊙ M ([out, ...] or per-decision [D, out, in]).
    """

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.register_buffer("weight", torch.zeros(shape), persistent=False)
        self.register_parameter("scores", None)
        self.mask_kind = "threshold"
        self.density: float | None = None
        self._weff: Tensor | None = None
        self._capture: list[tuple[Tensor, Tensor]] | None = None

    @property
    def numel(self) -> int:
        """Number of weights (= mask bits) of the layer."""
        return self.weight.numel()

    @property
    def fan_in(self) -> int:
        """in·k_h·k_w."""
        return self.weight[0].numel()

    @property
    def kept(self) -> int | None:
        """Weights kept by a top-k mask, None for threshold masks."""
        return None if self.density is None else kept_count(self.numel, self.density)

    def _cpu_draw(self, generator: torch.Generator | None) -> Tensor:
        """Kaiming-uniform (a=√5) draw of the weight's shape and dtype, made on the CPU with the
        CPU ``generator`` (torch's global CPU RNG if None): the same numbers on every device."""
        w = torch.empty(self.weight.shape, dtype=self.weight.dtype, device="cpu")
        nn.init.kaiming_uniform_(w, a=math.sqrt(5), generator=generator)
        return w

    def init_weight(self, generator: torch.Generator) -> None:
        """Signed Kaiming constant: sign of PyTorch's default init, times √2/√fan_in."""
        w = self._cpu_draw(generator)
        scale = math.sqrt(2.0) / math.sqrt(self.fan_in)
        self.weight.copy_(torch.where(w >= 0, scale, -scale))

    def random_scores(self, generator: torch.Generator | None) -> Tensor:
        """Fresh scores ~ U(−1/√fan_in, 1/√fan_in) (kaiming-uniform, a=√5) from ``generator``,
        drawn on the CPU, returned on the weight's device."""
        return self._cpu_draw(generator).to(self.weight.device)

    def effective_weight(self) -> Tensor:
        """W ⊙ M for the current mode."""
        if self._weff is not None:
            return self._weff
        if self.scores is None:
            raise RuntimeError("no mask selected: call new_task(), use_task(i) or use_alphas()")
        if self.mask_kind == "threshold":
            return _ThresholdWeight.apply(self.scores, self.weight)
        return self.weight * _TopKSTE.apply(self.scores.abs(), self.kept)

    def forward(self, x: Tensor) -> Tensor:
        y = self._compute(x, self.effective_weight())
        if self._capture is not None:
            self._capture.append((x, y))
        return y

    def _compute(self, x: Tensor, w: Tensor) -> Tensor:
        raise NotImplementedError


class MaskedLinear(MaskedLayer):
    """Masked bias-free linear layer; accepts [..., in], or [D, b, in] with weights [D, out, in]."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__((out_features, in_features))

    def _compute(self, x: Tensor, w: Tensor) -> Tensor:
        if w.dim() == 3:
            return torch.bmm(x, w.transpose(1, 2))
        return F.linear(x, w)


class MaskedConv2d(MaskedLayer):
    """Masked bias-free 2-D convolution."""

    def __init__(
        self, c_in: int, c_out: int, kernel: int, stride: int = 1, padding: int = 0
    ) -> None:
        super().__init__((c_out, c_in, kernel, kernel))
        self.stride, self.padding = stride, padding

    def _compute(self, x: Tensor, w: Tensor) -> Tensor:
        return F.conv2d(x, w, stride=self.stride, padding=self.padding)


class TaskBatchNorm2d(nn.Module):
    """Non-affine BatchNorm with one set of running statistics per task (``task`` selects it).

    Training mode normalises with batch statistics and updates the selected task's running
    mean/var (momentum 0.1); eval mode uses them. The statistics are plain tensors (not
    buffers, not in the ``state_dict``) that follow ``.to()``/``.cuda()``/``.double()`` like
    buffers do; new ones are made on the module's current device and dtype.
    """

    def __init__(self, channels: int, momentum: float = 0.1, eps: float = 1e-5) -> None:
        super().__init__()
        self.channels, self.momentum, self.eps = channels, momentum, eps
        self.means: list[Tensor] = []
        self.vars: list[Tensor] = []
        self.task = -1
        like = torch.empty(0)  # torch's default device and dtype, as for the weight buffers
        self._stat_device, self._stat_dtype = like.device, like.dtype

    def add_task(self) -> int:
        """Append fresh statistics (mean 0, var 1); returns their index."""
        kw = {"dtype": self._stat_dtype, "device": self._stat_device}
        self.means.append(torch.zeros(self.channels, **kw))
        self.vars.append(torch.ones(self.channels, **kw))
        return len(self.means) - 1

    def _apply(self, fn: Any, recurse: bool = True) -> TaskBatchNorm2d:
        super()._apply(fn, recurse)
        self.means = [fn(m) for m in self.means]
        self.vars = [fn(v) for v in self.vars]
        probe = fn(torch.empty(0, dtype=self._stat_dtype, device=self._stat_device))
        self._stat_device, self._stat_dtype = probe.device, probe.dtype
        return self

    def forward(self, x: Tensor) -> Tensor:
        if not 0 <= self.task < len(self.means):
            raise RuntimeError(f"BN statistics of task {self.task} do not exist")
        t = self.task
        return F.batch_norm(
            x, self.means[t], self.vars[t], None, None, self.training, self.momentum, self.eps
        )


def _batch_stat_norm(h: Tensor, valid: Tensor | None, eps: float = 1e-5) -> Tensor:
    """Non-affine batch-statistics BN: over the batch for [B, C], per group (dim 1) for
    [D, b, C], counting only ``valid`` rows."""
    if h.dim() == 2:
        return F.batch_norm(h, None, None, training=True, eps=eps)
    if valid is None:
        mean = h.mean(1, keepdim=True)
        var = h.var(1, unbiased=False, keepdim=True)
    else:
        v = valid.unsqueeze(-1).to(h.dtype)
        n = v.sum(1, keepdim=True)
        mean = (h * v).sum(1, keepdim=True) / n
        var = ((h - mean).square() * v).sum(1, keepdim=True) / n
    return (h - mean) / torch.sqrt(var + eps)


# --------------------------------------------------------------------------- networks


class SupermaskNet(nn.Module):
    """Base of all supermask models: fixed weights, current scores, mask store, modes.

    Life cycle of a task: :meth:`new_task` → train :meth:`score_parameters` →
    :meth:`commit_task` (packs the mask; the float scores are dropped).

    Devices: everything lives on the device of the fixed weights. ``.to()``/``.cuda()``/
    ``.double()`` move the mask store (uint8 always), the per-task BN statistics, the transfer
    mean and the rows of any :class:`ScoreBank` of the net, and recompute the current mode's
    W ⊙ M. Random scores are drawn on the CPU (from CPU generators), then moved. Move the net
    before creating optimizers of its scores, as for any module.
    """

    supports_inference = False  # One-Shot/Binary allowed (MLPs without running-stat BN)

    def __init__(
        self,
        *,
        output_size: int,
        seed: int,
        mask: str = "threshold",
        density: float | None = None,
        er_scale: int | None = None,
        init: str = "random",
    ) -> None:
        super().__init__()
        if mask not in MASK_KINDS:
            raise Incompatible(f"mask '{mask}' unknown: choose one of {', '.join(MASK_KINDS)}")
        if init not in INITS:
            raise Incompatible(f"init '{init}' unknown: choose one of {', '.join(INITS)}")
        if mask == "topk" and (density is None) == (er_scale is None):
            raise Incompatible("topk masks need exactly one of density or er_scale")
        if mask == "threshold" and (density is not None or er_scale is not None):
            raise Incompatible("threshold masks take no density/er_scale: use mask='topk'")
        if density is not None and not 0.0 < density <= 1.0:
            raise Incompatible(f"density must be in (0, 1], got {density}")
        if er_scale is not None and (int(er_scale) != er_scale or er_scale < 1):
            raise Incompatible(f"er_scale must be a positive integer, got {er_scale}")
        self.output_size, self.seed = int(output_size), int(seed)
        self.mask_kind, self.init = mask, init
        self.density_arg, self.er_scale = density, er_scale
        self.config: dict[str, Any] = {}

    # ---- construction
    def _finish(self) -> None:
        """Collect layers, draw the fixed weights, set densities, create the store."""
        self.masked_layers: list[MaskedLayer] = [
            m for m in self.modules() if isinstance(m, MaskedLayer)
        ]
        self.task_bns: list[TaskBatchNorm2d] = [
            m for m in self.modules() if isinstance(m, TaskBatchNorm2d)
        ]
        generator = torch.Generator().manual_seed(self.seed)
        for layer in self.masked_layers:
            layer.init_weight(generator)
            layer.mask_kind = self.mask_kind
            if self.mask_kind == "topk":
                if self.er_scale is not None:
                    w = layer.weight
                    kernel = tuple(w.shape[2:]) if w.dim() == 4 else (1, 1)
                    layer.density = er_density(w.shape[0], w.shape[1], kernel, self.er_scale)
                else:
                    layer.density = self.density_arg
        self.store = PackedMaskStore([m.numel for m in self.masked_layers], self._device)
        self._training_task: int | None = None
        self._transfer_mean: list[Tensor] | None = None
        self._transfer_count = 0
        self._mode: tuple[str, int | None] = ("none", None)
        self._alpha_args: tuple[Tensor, MaskSource | None] | None = None
        self._task_cache: tuple[Any, list[Tensor]] | None = None
        self._mean_cache: tuple[Any, list[Tensor]] | None = None
        self._banks: weakref.WeakSet[ScoreBank] = weakref.WeakSet()

    # ---- description
    @property
    def num_weights(self) -> int:
        """P: masked weights (= bits per mask)."""
        return self.store.num_bits

    @property
    def num_tasks(self) -> int:
        """Stored (committed) masks."""
        return self.store.count

    @property
    def layer_densities(self) -> list[float] | None:
        """Per-layer top-k density (None for threshold masks)."""
        if self.mask_kind != "topk":
            return None
        return [float(m.density) for m in self.masked_layers]  # type: ignore[arg-type]

    @property
    def overall_density(self) -> float | None:
        """Σ kept / Σ weights over layers for top-k masks (None for threshold masks)."""
        if self.mask_kind != "topk":
            return None
        return sum(m.kept for m in self.masked_layers) / self.num_weights  # type: ignore[misc]

    @property
    def bn_channels(self) -> int:
        """Channels with per-task running statistics (0 for models without them)."""
        return sum(bn.channels for bn in self.task_bns)

    @property
    def mode(self) -> tuple[str, int | None]:
        """("scores", task being trained) | ("task", i) | ("alphas", None) | ("mean", None)."""
        return self._mode

    # ---- training a task
    def new_task(self, generator: torch.Generator | None = None) -> int:
        """Start the next task (index = num_tasks): fresh scores and BN statistics; mode scores.

        Scores are drawn from ``generator`` (torch's global RNG if None), never from the weight
        generator; with ``init="transfer"`` they start from the running mean of the earlier
        tasks' final float scores (random for the first task). Calling it again before
        :meth:`commit_task` restarts the task.
        """
        task = self.store.count
        if self._transfer_mean is not None and self._transfer_count > 0:
            scores = [m.clone() for m in self._transfer_mean]
        else:
            scores = [layer.random_scores(generator) for layer in self.masked_layers]
        for layer, s in zip(self.masked_layers, scores, strict=True):
            layer.scores = nn.Parameter(s.to(layer.weight.device, layer.weight.dtype))
        for bn in self.task_bns:
            del bn.means[task:], bn.vars[task:]
            bn.add_task()
        self._training_task = task
        self.use_scores()
        return task

    def score_parameters(self) -> list[nn.Parameter]:
        """The current task's float scores (the only trainable tensors)."""
        params = [layer.scores for layer in self.masked_layers]
        if any(p is None for p in params):
            raise RuntimeError("no task in training: call new_task() first")
        return params  # type: ignore[return-value]

    def attach_scores(self, scores: Sequence[nn.Parameter]) -> None:
        """Train these per-layer score Parameters (e.g. a :class:`ScoreBank` row); mode scores."""
        if self.task_bns:
            raise Incompatible("score banks are for models without per-task BN statistics")
        for layer, s in zip(self.masked_layers, scores, strict=True):
            if s.shape != layer.weight.shape:
                raise ValueError(f"scores of shape {tuple(s.shape)} for a {layer.weight.shape}")
            if s.device != layer.weight.device:
                raise ValueError(f"scores on {s.device} for weights on {layer.weight.device}")
            layer.scores = s
        self._training_task = None
        self._set_weights(None, ("scores", None))

    def use_scores(self) -> None:
        """Mode scores: forward with the masks of the current float scores (trainable)."""
        self.score_parameters()
        for bn in self.task_bns:
            bn.task = -1 if self._training_task is None else self._training_task
        self._set_weights(None, ("scores", self._training_task))

    @torch.no_grad()
    def current_mask(self) -> Tensor:
        """The binary mask of the current scores, flat bool [P]."""
        parts = [
            hard_masks(layer.scores.detach().reshape(1, -1), self.mask_kind, layer.density)[0]
            for layer in self.masked_layers
            if layer.scores is not None
        ]
        if len(parts) != len(self.masked_layers):
            raise RuntimeError("no task in training: call new_task() first")
        return torch.cat(parts)

    @torch.no_grad()
    def commit_task(self) -> int:
        """Pack the current mask into the store, fold the scores into the transfer mean, drop
        them; returns the task's index and switches to ``use_task`` of it."""
        if self._training_task is None:
            raise RuntimeError("no task in training: call new_task() first")
        index = self.store.append(self.current_mask())
        if self.init == "transfer":
            if self._transfer_mean is None:
                self._transfer_mean = [torch.zeros_like(m.weight) for m in self.masked_layers]
            self._transfer_count += 1
            for mean, layer in zip(self._transfer_mean, self.masked_layers, strict=True):
                mean += (layer.scores.detach() - mean) / self._transfer_count
        for layer in self.masked_layers:
            layer.scores = None
        self._training_task = None
        self.use_task(index)
        return index

    # ---- using stored masks
    @torch.no_grad()
    def use_task(self, index: int) -> None:
        """Mode task: forward with stored mask ``index`` and its BN statistics.

        The unpacked W ⊙ M is cached while the same index (and store) is used.
        """
        if not 0 <= index < self.store.count:
            raise IndexError(f"task {index} requested, {self.store.count} masks stored")
        key = (index, self.store.version, self._dtype, self._device)
        if self._task_cache is None or self._task_cache[0] != key:
            weffs = [
                layer.weight
                * self.store.layer_masks(i, index, index + 1, self._dtype).view_as(layer.weight)
                for i, layer in enumerate(self.masked_layers)
            ]
            self._task_cache = (key, weffs)
        for bn in self.task_bns:
            bn.task = index
        self._set_weights(self._task_cache[1], ("task", index))

    def use_alphas(self, alphas: Tensor, source: MaskSource | None = None) -> None:
        """Mode alphas: W ⊙ Σ_i α_i M_i over the first len(alphas) masks of ``source`` (default
        the store); differentiable in ``alphas``. Keeps k·P floats for autograd: small k only
        (task inference uses :func:`alpha_gradients` instead)."""
        self._require_superposable()
        coeffs = alphas.to(self._device, self._dtype).unsqueeze(0)  # differentiable move
        weffs = self._mixed_weights(self.store if source is None else source, coeffs, len(alphas))
        self._set_weights([w[0] for w in weffs], ("alphas", None))
        self._alpha_args = (alphas, source)

    def use_mean(self) -> None:
        """Mode mean: W ⊙ M̄, M̄ the mean of all stored masks (cached until the store changes)."""
        self._require_superposable()
        self._set_weights(self._mean_weights(self.store, self.store.count), ("mean", None))

    def weights_changed(self) -> None:
        """Forget every cached W ⊙ M after the weights were edited in place (ExSSNeT trains
        them) and recompute the current mode's."""
        self._task_cache = self._mean_cache = None
        kind, index = self._mode
        if kind == "task":
            self.use_task(index)  # type: ignore[arg-type]
        elif kind == "mean":
            self.use_mean()
        elif kind == "alphas" and self._alpha_args is not None:
            self.use_alphas(*self._alpha_args)

    # ---- checkpoints
    def get_state(self) -> dict[str, Any]:
        """Everything needed to rebuild this model (W is re-derived from the seed)."""
        training = self._training_task is not None
        return {
            "config": dict(self.config),
            "packed": self.store.packed.clone(),
            "bn_means": [torch.stack(bn.means) if bn.means else None for bn in self.task_bns],
            "bn_vars": [torch.stack(bn.vars) if bn.vars else None for bn in self.task_bns],
            "scores": [m.scores.detach().clone() for m in self.masked_layers] if training else None,
            "transfer_mean": self._transfer_mean,
            "transfer_count": self._transfer_count,
        }

    # ---- devices
    def _apply(self, fn: Any, recurse: bool = True) -> SupermaskNet:
        """``nn.Module`` conversions (``.to()``, ``.cuda()``, ``.double()``, ...): also move the
        store, the transfer mean and the rows of score banks, drop the cached W ⊙ M and
        recompute the current mode's."""
        if not hasattr(self, "store"):  # still being built
            return super()._apply(fn, recurse)
        attached = [layer.scores for layer in self.masked_layers]
        super()._apply(fn, recurse)  # weights, current scores, TaskBatchNorm2d statistics
        self.store.to(self._device)
        if self._transfer_mean is not None:
            self._transfer_mean = [fn(m) for m in self._transfer_mean]
        now = [layer.scores for layer in self.masked_layers]
        for bank in list(self._banks):
            if bank.net is self:  # a deep copy of the net shares the original's banks: skip them
                bank._apply(fn, attached, now)
        self._task_cache = self._mean_cache = None
        kind, index = self._mode
        if kind == "task":
            self.use_task(index)  # type: ignore[arg-type]
        elif kind == "mean":
            self.use_mean()
        elif kind == "alphas" and self._alpha_args is not None:
            self.use_alphas(*self._alpha_args)
        return self

    # ---- internals
    @property
    def _dtype(self) -> torch.dtype:
        return self.masked_layers[0].weight.dtype

    @property
    def _device(self) -> torch.device:
        return self.masked_layers[0].weight.device

    def _require_superposable(self) -> None:
        if self.task_bns:
            raise Incompatible(
                f"{self.config.get('cls')} has per-task BN statistics: superposition of masks "
                "is undefined; use use_task(i) (GG)"
            )

    def _set_weights(self, weffs: Sequence[Tensor] | None, mode: tuple[str, int | None]) -> None:
        for i, layer in enumerate(self.masked_layers):
            layer._weff = None if weffs is None else weffs[i]
        self._mode = mode
        self._alpha_args = None

    def _chunk(self, layer: int, budget: int) -> int:
        itemsize = torch.finfo(self._dtype).bits // 8
        return max(1, budget // (2 * itemsize * self.masked_layers[layer].numel))

    @torch.no_grad()
    def _mean_weights(self, source: MaskSource, k: int, budget: int = 64 * _MB) -> list[Tensor]:
        """W ⊙ mean of the first k masks of ``source``; cached while the source is unchanged."""
        if k < 1:
            raise RuntimeError("no masks stored")
        key = (id(source), source.version, k, self._dtype, self._device)
        if source.version is not None and self._mean_cache and self._mean_cache[0] == key:
            return self._mean_cache[1]
        weffs = []
        for i, layer in enumerate(self.masked_layers):
            acc = torch.zeros(layer.numel, dtype=self._dtype, device=layer.weight.device)
            step = self._chunk(i, budget)
            for s in range(0, k, step):
                acc += source.layer_masks(i, s, min(k, s + step), self._dtype).sum(0)
            weffs.append(layer.weight * (acc / k).view_as(layer.weight))
        if source.version is not None:
            self._mean_cache = (key, weffs)
        return weffs

    def _mixed_weights(
        self, source: MaskSource, coeffs: Tensor, k: int, budget: int = 64 * _MB
    ) -> list[Tensor]:
        """Per-row W ⊙ Σ_t coeffs[d, t] M_t: [D, *weight shape] per layer (autograd-aware)."""
        if k > source.count:
            raise IndexError(f"{k} masks requested, the source has {source.count}")
        weffs = []
        track = coeffs.requires_grad and torch.is_grad_enabled()
        for i, layer in enumerate(self.masked_layers):
            acc = torch.zeros(
                coeffs.shape[0], layer.numel, dtype=self._dtype, device=layer.weight.device
            )
            step = self._chunk(i, budget)
            for s in range(0, k, step):
                c = coeffs[:, s : min(k, s + step)]
                if track:
                    acc = acc + c @ source.layer_masks(i, s, min(k, s + step), self._dtype)
                elif bool(c.any()):
                    acc.addmm_(c, source.layer_masks(i, s, min(k, s + step), self._dtype))
            weffs.append(
                acc * layer.weight.reshape(1, -1)
                if track
                else acc.mul_(layer.weight.reshape(1, -1))
            )
        layers = self.masked_layers
        return [w.view(-1, *m.weight.shape) for w, m in zip(weffs, layers, strict=True)]

    def _run(self, h: Tensor, valid: Tensor | None) -> Tensor:
        """Forward of already flattened inputs ([B, F] or per-decision [D, b, F])."""
        raise Incompatible(f"{self.config.get('cls')} does not support task inference")


class SupermaskMLP(SupermaskNet):
    """Masked MLP in_features-hidden…-output_size (lenet, fc1024, bnnet and custom sizes).

    ``activation`` "relu" or "swish"; ``batch_norm`` adds non-affine batch-statistics BN
    (no running statistics) before each hidden activation. Inputs [B, ...] are flattened.
    """

    supports_inference = True

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int],
        output_size: int,
        seed: int,
        *,
        activation: str = "relu",
        batch_norm: bool = False,
        mask: str = "threshold",
        density: float | None = None,
        er_scale: int | None = None,
        init: str = "random",
    ) -> None:
        super().__init__(
            output_size=output_size,
            seed=seed,
            mask=mask,
            density=density,
            er_scale=er_scale,
            init=init,
        )
        if activation not in ("relu", "swish"):
            raise Incompatible(f"activation '{activation}' unknown: relu or swish")
        sizes = (int(in_features), *(int(h) for h in hidden), int(output_size))
        self.layers = nn.ModuleList(MaskedLinear(a, b) for a, b in itertools.pairwise(sizes))
        self.activation, self.batch_norm = activation, batch_norm
        self._act = F.relu if activation == "relu" else F.silu
        self.config = {
            "cls": "SupermaskMLP",
            "in_features": sizes[0],
            "hidden": list(sizes[1:-1]),
            "output_size": sizes[-1],
            "seed": self.seed,
            "activation": activation,
            "batch_norm": batch_norm,
            "mask": mask,
            "density": density,
            "er_scale": er_scale,
            "init": init,
        }
        self._finish()

    def forward(self, x: Tensor) -> Tensor:
        return self._run(x.flatten(1) if x.dim() > 2 else x, None)

    def _run(self, h: Tensor, valid: Tensor | None) -> Tensor:
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            h = layer(h)
            if i < last:
                if self.batch_norm:
                    h = _batch_stat_norm(h, valid)
                h = self._act(h)
        return h


def _conv_bn(c_in: int, c_out: int, kernel: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        MaskedConv2d(c_in, c_out, kernel, stride, kernel // 2), TaskBatchNorm2d(c_out)
    )


class _BasicBlock(nn.Module):
    def __init__(self, c_in: int, planes: int, stride: int) -> None:
        super().__init__()
        self.branch1 = _conv_bn(c_in, planes, 3, stride)
        self.branch2 = _conv_bn(planes, planes, 3, 1)
        self.shortcut = _conv_bn(c_in, planes, 1, stride) if stride != 1 or c_in != planes else None

    def forward(self, x: Tensor) -> Tensor:
        out = self.branch2(F.relu(self.branch1(x)))
        return F.relu(out + (x if self.shortcut is None else self.shortcut(x)))


class _Bottleneck(nn.Module):
    def __init__(self, c_in: int, planes: int, stride: int) -> None:
        super().__init__()
        self.branch1 = _conv_bn(c_in, planes, 1, 1)
        self.branch2 = _conv_bn(planes, planes, 3, stride)
        self.branch3 = _conv_bn(planes, 4 * planes, 1, 1)
        self.shortcut = (
            _conv_bn(c_in, 4 * planes, 1, stride) if stride != 1 or c_in != 4 * planes else None
        )

    def forward(self, x: Tensor) -> Tensor:
        out = self.branch3(F.relu(self.branch2(F.relu(self.branch1(x)))))
        return F.relu(out + (x if self.shortcut is None else self.shortcut(x)))


class _ResNetBase(SupermaskNet):
    def _setup(self, cls: str, **kw: Any) -> None:
        self.config = {
            "cls": cls,
            "output_size": self.output_size,
            "seed": self.seed,
            "mask": self.mask_kind,
            "density": self.density_arg,
            "er_scale": self.er_scale,
            "init": self.init,
            **kw,
        }
        self._finish()


class GEMResNet18(_ResNetBase):
    """GEM's reduced ResNet-18 (BasicBlocks [2,2,2,2], widths nf·{1,2,4,8}, 3×3 stem) for
    32×32×3 input; per-task non-affine BN; masked 1×1 output layer after global pooling."""

    def __init__(self, output_size: int, seed: int, *, nf: int = 20, **mask_kw: Any) -> None:
        super().__init__(output_size=output_size, seed=seed, **mask_kw)
        self.stem = _conv_bn(3, nf, 3, 1)
        blocks: list[nn.Module] = []
        c_in = nf
        for mult, stride in ((1, 1), (2, 2), (4, 2), (8, 2)):
            for j in range(2):
                blocks.append(_BasicBlock(c_in, nf * mult, stride if j == 0 else 1))
                c_in = nf * mult
        self.blocks = nn.Sequential(*blocks)
        self.head = MaskedLinear(c_in, output_size)
        self._setup("GEMResNet18", nf=nf)

    def forward(self, x: Tensor) -> Tensor:
        out = self.blocks(F.relu(self.stem(x)))
        return self.head(F.adaptive_avg_pool2d(out, 1).flatten(1))


class ResNet50(_ResNetBase):
    """torchvision-style ResNet-50 (bottlenecks [3,4,6,3], stride on the 3×3 conv), bias-free,
    per-task non-affine BN, masked output layer (2048 → output_size); 224×224×3 input."""

    def __init__(self, output_size: int, seed: int, **mask_kw: Any) -> None:
        super().__init__(output_size=output_size, seed=seed, **mask_kw)
        self.stem = _conv_bn(3, 64, 7, 2)
        blocks: list[nn.Module] = []
        c_in = 64
        for planes, count, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
            for j in range(count):
                blocks.append(_Bottleneck(c_in, planes, stride if j == 0 else 1))
                c_in = 4 * planes
        self.blocks = nn.Sequential(*blocks)
        self.head = MaskedLinear(c_in, output_size)
        self._setup("ResNet50")

    def forward(self, x: Tensor) -> Tensor:
        out = F.max_pool2d(F.relu(self.stem(x)), 3, 2, 1)
        out = self.blocks(out)
        return self.head(F.adaptive_avg_pool2d(out, 1).flatten(1))


_MLP_SHAPES: dict[str, tuple[tuple[int, ...], str, bool]] = {
    "lenet": ((300, 100), "relu", False),
    "fc1024": ((1024, 1024), "relu", False),
    "bnnet": ((2048, 2048), "swish", True),
}


def build_model(
    name: str,
    output_size: int,
    seed: int,
    *,
    mask: str = "threshold",
    density: float | None = None,
    er_scale: int | None = None,
    init: str = "random",
    in_features: int = 784,
) -> SupermaskNet:
    """A supermask model by name (see :data:`MODEL_NAMES`); MLPs take ``in_features`` inputs."""
    kw: dict[str, Any] = {"mask": mask, "density": density, "er_scale": er_scale, "init": init}
    if name in _MLP_SHAPES:
        hidden, act, bn = _MLP_SHAPES[name]
        return SupermaskMLP(
            in_features, hidden, output_size, seed, activation=act, batch_norm=bn, **kw
        )
    if name == "gemresnet18":
        return GEMResNet18(output_size, seed, **kw)
    if name == "resnet50":
        return ResNet50(output_size, seed, **kw)
    raise Incompatible(f"unknown model '{name}': choose one of {', '.join(MODEL_NAMES)}")


def model_from_state(state: dict[str, Any]) -> SupermaskNet:
    """Rebuild a model saved with :meth:`SupermaskNet.get_state`, where a new model is built
    (the CPU, unless torch's default device says otherwise), whatever device the state's tensors
    are on; move it with ``.to()``."""
    cfg = dict(state["config"])
    cls = cfg.pop("cls")
    if cls == "SupermaskMLP":
        net: SupermaskNet = SupermaskMLP(
            cfg.pop("in_features"),
            cfg.pop("hidden"),
            cfg.pop("output_size"),
            cfg.pop("seed"),
            **cfg,
        )
    else:
        net = {"GEMResNet18": GEMResNet18, "ResNet50": ResNet50}[cls](
            cfg.pop("output_size"), cfg.pop("seed"), **cfg
        )
    device = net._device
    net.store.load(state["packed"])
    for bn, means, var in zip(net.task_bns, state["bn_means"], state["bn_vars"], strict=True):
        bn.means = [] if means is None else [m.to(device, copy=True) for m in means]
        bn.vars = [] if var is None else [v.to(device, copy=True) for v in var]
    if state["transfer_mean"] is not None:
        net._transfer_mean = [m.to(device, copy=True) for m in state["transfer_mean"]]
    net._transfer_count = state["transfer_count"]
    if state["scores"] is not None:
        for layer, s in zip(net.masked_layers, state["scores"], strict=True):
            layer.scores = nn.Parameter(s.to(device, copy=True))
        net._training_task = net.store.count
        net.use_scores()
    elif net.store.count:
        net.use_task(net.store.count - 1)
    return net


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


def _group(x: Tensor, sizes: int | Sequence[int]) -> tuple[Tensor, Tensor | None, int]:
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


def _objective(logits: Tensor, valid: Tensor | None, objective: str, real: int | None) -> Tensor:
    """Per-decision objective [D]: mean over the decision's images of H or G."""
    if objective == "H":
        logp = F.log_softmax(logits, -1)
        per = -(logp.exp() * logp).sum(-1)
    else:
        per = torch.logsumexp(torch.cat([logits[..., :real].detach(), logits[..., real:]], -1), -1)
    if valid is None:
        return per.mean(1)
    return torch.where(valid, per, 0.0).sum(1) / valid.sum(1)


@contextmanager
def _inference_weights(net: SupermaskNet, weffs: Sequence[Tensor]) -> Iterator[list[list]]:
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
    with torch.enable_grad(), _inference_weights(net, weffs) as caps:
        x_in = xg.detach().to(dtype).requires_grad_(True)
        obj = _objective(net._run(x_in, valid), valid, objective, real)
        deltas = list(torch.autograd.grad(obj.sum(), [c[0][1] for c in caps]))
        inputs = [c[0][0].detach() for c in caps]
    del obj, caps
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
    xg, valid, smallest = _group(x.to(net._device), sizes)
    _check_inference(net, objective, real_classes, smallest)
    coeffs = None
    if candidates is not None:
        cand = candidates.to(net._device, net._dtype)
        coeffs = cand / cand.sum(1, keepdim=True)
    return _gradients(
        net, xg, valid, objective, real_classes, source, k, coeffs, memory_mb * _MB, strategy,
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
    xg, valid, smallest = _group(x.to(net._device), sizes)
    _check_k(source, k)
    _check_inference(net, objective, real_classes, smallest)
    if method == "oneshot":
        budget = memory_mb * _MB
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


# --------------------------------------------------------------------------- bytes


def bits_bytes(net: SupermaskNet) -> int:
    """Bytes with bit-packed masks: 8 (seed) + k·⌈P/8⌉ + k·8·C_bn.

    k stored tasks, P masked weights, C_bn channels with per-task float32 running mean and var
    (0 for the MLPs).
    """
    k = net.store.count
    return SEED_BYTES + k * net.store.row_bytes + k * 8 * net.bn_channels


def sparse_bytes(net: SupermaskNet) -> int:
    """Bytes with per-layer CSC masks (scipy.sparse.csc, 16-bit row indices, int32 pointers):

    8 (seed) + Σ_tasks Σ_layers [2·nnz_{t,l} + 4·(cols_l + 1)] + k·8·C_bn, where a layer's
    weight is the matrix [rows = out, cols = in·k_h·k_w] and nnz its kept weights in task t.
    """
    k = net.store.count
    total = SEED_BYTES + k * 8 * net.bn_channels
    for li, layer in enumerate(net.masked_layers):
        rows, cols = layer.weight.shape[0], layer.fan_in
        if rows > 65536:
            raise ValueError(f"{rows} rows do not fit 16-bit row indices")
        total += 2 * int(net.store.layer_counts(li).sum()) + 4 * (cols + 1) * k
    return total

"""Masked layers and the pieces they are made of: mask rules (threshold, top-k, the ER budget),
straight-through estimators, the bias-free masked linear and conv layers, and the project's one
per-task BatchNorm (also used by BatchE and the per-task-head bounds on plain layers).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn


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
    """W ⊙ 1[s ≥ 0]; straight-through: ∂L/∂s = ∂L/∂M = ∂L/∂(W⊙M) ⊙ W. (W times the boolean
    mask, about three times faster on the CPU than ``torch.where`` with a scalar, and equal to
    it: dropped weights are ±0.)"""

    @staticmethod
    def forward(ctx: Any, scores: Tensor, weight: Tensor) -> Tensor:
        ctx.save_for_backward(weight)
        return weight * (scores >= 0)

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


class _UnitStep(torch.autograd.Function):
    """1[score ≥ 0] forward, identity backward (straight-through)."""

    @staticmethod
    def forward(ctx: Any, score: Tensor) -> Tensor:
        return (score >= 0).to(score.dtype)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        return grad


def unit_mask(score: Tensor) -> Tensor:
    """The float 0/1 mask 1[score ≥ 0] of a score vector, differentiable straight-through
    (HopSupSup's per-unit masks)."""
    return _UnitStep.apply(score)


class TaskBatchNorm2d(nn.Module):
    """Non-affine BatchNorm with one set of running statistics per task (SupSup's
    ``MultitaskNonAffineBN``): ``task`` selects the set, :meth:`add_task` appends a fresh one.

    Training mode normalises with batch statistics and updates the selected set's running
    mean/var (momentum 0.1); eval mode uses them. Each set is the running statistics of an
    ``nn.BatchNorm2d(affine=False)`` in ``bns``: they are in the ``state_dict`` (keys
    ``bns.<task>.running_mean`` ...) and follow ``.to()``/``.double()``; new sets are made on
    the module's current device and dtype.
    """

    def __init__(self, channels: int, momentum: float = 0.1, eps: float = 1e-5) -> None:
        super().__init__()
        self.channels, self.momentum, self.eps = channels, momentum, eps
        self.bns = nn.ModuleList()
        self.task = -1
        self.register_buffer("_like", torch.empty(0), persistent=False)  # device, dtype

    @property
    def means(self) -> list[Tensor]:
        """Running means, one per task."""
        return [bn.running_mean for bn in self.bns]

    @property
    def vars(self) -> list[Tensor]:
        """Running variances, one per task."""
        return [bn.running_var for bn in self.bns]

    def add_task(self) -> int:
        """Append fresh statistics (mean 0, var 1); returns their index."""
        like = self._like
        self.bns.append(nn.BatchNorm2d(self.channels, self.eps, self.momentum, affine=False,
                                       device=like.device, dtype=like.dtype))
        return len(self.bns) - 1

    def keep_tasks(self, count: int) -> None:
        """Drop the statistics of tasks ``count`` and later (a task being restarted)."""
        del self.bns[count:]

    @torch.no_grad()
    def load_statistics(self, means: Tensor | None, variances: Tensor | None) -> None:
        """Replace every set with rows of ``means``/``variances`` [tasks, C] (None: no task)."""
        del self.bns[:]
        for mean, var in zip(() if means is None else means, () if variances is None else variances,
                             strict=True):
            bn = self.bns[self.add_task()]
            bn.running_mean.copy_(mean)
            bn.running_var.copy_(var)

    def forward(self, x: Tensor) -> Tensor:
        if not 0 <= self.task < len(self.bns):
            raise RuntimeError(f"BN statistics of task {self.task} do not exist")
        bn = self.bns[self.task]
        return F.batch_norm(x, bn.running_mean, bn.running_var, None, None, self.training,
                            self.momentum, self.eps)


def add_task(model: nn.Module) -> None:
    """Append fresh statistics to every :class:`TaskBatchNorm2d` of ``model`` (none: no-op)."""
    for m in model.modules():
        if isinstance(m, TaskBatchNorm2d):
            m.add_task()


def set_task(model: nn.Module, task: int) -> None:
    """Select task ``task``'s statistics in every :class:`TaskBatchNorm2d` of ``model``."""
    for m in model.modules():
        if isinstance(m, TaskBatchNorm2d):
            m.task = task


def bn_statistics(model: nn.Module, per_task: bool) -> int:
    """Floats of running BatchNorm statistics (mean and var): of one task's set if
    ``per_task``, else of the model's shared affine BatchNorm layers."""
    count = 0
    for m in model.modules():
        if isinstance(m, TaskBatchNorm2d) and per_task:
            count += 2 * m.channels
        elif isinstance(m, nn.BatchNorm2d) and not per_task and m.affine:
            count += 2 * m.num_features
    return count


def batch_stat_norm(h: Tensor, valid: Tensor | None = None, eps: float = 1e-5, *,
                    fused: bool = True) -> Tensor:
    """Non-affine BatchNorm with the batch's own statistics (biased variance, as BatchNorm
    normalises in training): over the batch of [B, C], over each decision's images of
    [D, b, C], counting only ``valid`` rows. ``fused``: [B, C] through ``F.batch_norm``
    (SupermaskMLP's bnnet) rather than the explicit formula (HopSupSup's UnitMaskNet); the
    two agree to rounding, and each model keeps the one it was measured with."""
    if h.dim() == 2 and fused:
        return F.batch_norm(h, None, None, training=True, eps=eps)
    if valid is None:
        mean = h.mean(-2, keepdim=True)
        var = h.var(-2, unbiased=False, keepdim=True)
    else:
        v = valid.unsqueeze(-1).to(h.dtype)
        n = v.sum(1, keepdim=True)
        mean = (h * v).sum(1, keepdim=True) / n
        var = ((h - mean).square() * v).sum(1, keepdim=True) / n
    return (h - mean) / torch.sqrt(var + eps)

"""SupermaskNet, the base of every supermask model: fixed signed-constant weights drawn from the
seed (buffers, never in the ``state_dict``), the scores of the task being trained, the packed
store of finished masks, and the modes that choose what W ⊙ M a forward pass uses.

* Masks: ``"threshold"`` (M = 1[score ≥ 0]) or ``"topk"`` (edge-popup: top ``density`` of
  |score| per layer, or the ER budget ``er_scale``), both straight-through.
* Modes: :meth:`SupermaskNet.use_scores` (train), :meth:`~SupermaskNet.use_task` (stored mask i),
  :meth:`~SupermaskNet.use_alphas` (superposition), :meth:`~SupermaskNet.use_mean`.

The architectures are in :mod:`clbench.supermask.nets`.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from clbench.errors import Incompatible
from clbench.supermask.bits import MB, MaskSource, PackedMaskStore
from clbench.supermask.layers import MaskedLayer, TaskBatchNorm2d, er_density, hard_masks

if TYPE_CHECKING:
    from clbench.supermask.inference import ScoreBank

MASK_KINDS = ("threshold", "topk")
INITS = ("random", "transfer")


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
            bn.keep_tasks(task)
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
        them) or moved, and recompute the current mode's."""
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
        self.weights_changed()
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
    def _mean_weights(self, source: MaskSource, k: int, budget: int = 64 * MB) -> list[Tensor]:
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
        self, source: MaskSource, coeffs: Tensor, k: int, budget: int = 64 * MB
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



"""Supermask architectures by name (:func:`build_model`) and from a saved state
(:func:`model_from_state`), and the project's one GEM ResNet-18 (and ResNet-50), built from
layer factories so that plain, rank-one (BatchE) and masked versions are the same class.

Supermask models are bias-free, every conv/linear layer masked (output layer included). Weights
are signed constants sign(w)·√2/√fan_in of PyTorch's default init, drawn from the model's own
generator seeded by ``seed`` (buffers, never trained, not in the ``state_dict``; independent of
how many tasks or scores are ever created).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from clbench.errors import Incompatible
from clbench.models import BATCH_STAT_BN, HIDDEN, MODELS
from clbench.supermask.layers import MaskedConv2d, MaskedLinear, TaskBatchNorm2d, batch_stat_norm
from clbench.supermask.supernet import SupermaskNet

Conv = Callable[[int, int, int, int], nn.Module]  # (c_in, c_out, kernel, stride), "same" padding
Norm = Callable[[int], nn.Module]  # channels
Head = Callable[[int, int], nn.Module]  # (in_features, outputs)


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
                    h = batch_stat_norm(h, valid)
                h = self._act(h)
        return h


# --------------------------------------------------------------------------- ResNets


def plain_conv(c_in: int, c_out: int, kernel: int, stride: int) -> nn.Module:
    """A trainable bias-free conv with "same" padding (PyTorch's default init)."""
    return nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False)


def plain_head(c_in: int, outputs: int) -> nn.Module:
    """A trainable bias-free linear output layer."""
    return nn.Linear(c_in, outputs, bias=False)


def masked_conv(c_in: int, c_out: int, kernel: int, stride: int) -> nn.Module:
    """A masked bias-free conv with "same" padding."""
    return MaskedConv2d(c_in, c_out, kernel, stride, kernel // 2)


class BasicBlock(nn.Module):
    """Two 3×3 convs with a norm after each, and a projection shortcut when the shape changes."""

    def __init__(self, c_in: int, planes: int, stride: int, conv: Conv, norm: Norm) -> None:
        super().__init__()
        self.conv1, self.bn1 = conv(c_in, planes, 3, stride), norm(planes)
        self.conv2, self.bn2 = conv(planes, planes, 3, 1), norm(planes)
        self.shortcut = None
        if stride != 1 or c_in != planes:
            self.shortcut = nn.Sequential(conv(c_in, planes, 1, stride), norm(planes))

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(out + (x if self.shortcut is None else self.shortcut(x)))


class Bottleneck(nn.Module):
    """1×1, 3×3 (strided), 1×1 ×4 convs with norms, and a projection shortcut when needed."""

    def __init__(self, c_in: int, planes: int, stride: int, conv: Conv, norm: Norm) -> None:
        super().__init__()
        self.conv1, self.bn1 = conv(c_in, planes, 1, 1), norm(planes)
        self.conv2, self.bn2 = conv(planes, planes, 3, stride), norm(planes)
        self.conv3, self.bn3 = conv(planes, 4 * planes, 1, 1), norm(4 * planes)
        self.shortcut = None
        if stride != 1 or c_in != 4 * planes:
            self.shortcut = nn.Sequential(conv(c_in, 4 * planes, 1, stride), norm(4 * planes))

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        out = self.bn3(self.conv3(F.relu(out)))
        return F.relu(out + (x if self.shortcut is None else self.shortcut(x)))


class GEMResNet18(nn.Module):
    """GEM's reduced ResNet-18 (BasicBlocks [2,2,2,2], widths nf·{1,2,4,8}, 3×3 stem) for
    32×32×3 input, bias-free as in the SupSup reference. ``conv``, ``norm`` and ``head`` make
    the layers (in this order: stem, blocks, head; PyTorch's default init when plain)."""

    def __init__(self, outputs: int, *, nf: int = 20, conv: Conv = plain_conv,
                 norm: Norm = nn.BatchNorm2d, head: Head = plain_head) -> None:
        super().__init__()
        self.settings = {"nf": nf}
        self.stem = nn.Sequential(conv(3, nf, 3, 1), norm(nf))
        blocks: list[nn.Module] = []
        c_in = nf
        for mult, stride in ((1, 1), (2, 2), (4, 2), (8, 2)):
            for j in range(2):
                blocks.append(BasicBlock(c_in, nf * mult, stride if j == 0 else 1, conv, norm))
                c_in = nf * mult
        self.blocks = nn.Sequential(*blocks)
        self.head = head(c_in, outputs)

    def features(self, x: Tensor) -> Tensor:
        """The head's input: globally pooled features [B, 8·nf]."""
        out = self.blocks(F.relu(self.stem(x)))
        return F.adaptive_avg_pool2d(out, 1).flatten(1)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


class ResNet50(nn.Module):
    """torchvision-style ResNet-50 (bottlenecks [3,4,6,3], stride on the 3×3 conv), bias-free,
    output layer 2048 → outputs; 224×224×3 input. Layers as :class:`GEMResNet18`."""

    def __init__(self, outputs: int, *, conv: Conv = plain_conv, norm: Norm = nn.BatchNorm2d,
                 head: Head = plain_head) -> None:
        super().__init__()
        self.settings: dict[str, Any] = {}
        self.stem = nn.Sequential(conv(3, 64, 7, 2), norm(64))
        blocks: list[nn.Module] = []
        c_in = 64
        for planes, count, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
            for j in range(count):
                blocks.append(Bottleneck(c_in, planes, stride if j == 0 else 1, conv, norm))
                c_in = 4 * planes
        self.blocks = nn.Sequential(*blocks)
        self.head = head(c_in, outputs)

    def features(self, x: Tensor) -> Tensor:
        """The head's input: globally pooled features [B, 2048]."""
        out = self.blocks(F.max_pool2d(F.relu(self.stem(x)), 3, 2, 1))
        return F.adaptive_avg_pool2d(out, 1).flatten(1)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


RESNETS: dict[str, type[nn.Module]] = {"gemresnet18": GEMResNet18, "resnet50": ResNet50}


class MaskedResNet(SupermaskNet):
    """A ResNet (``arch``: :class:`GEMResNet18` or :class:`ResNet50`, with ``arch_kw``) as a
    supermask model: masked convs and output layer, per-task non-affine BN statistics."""

    def __init__(self, arch: type[nn.Module], output_size: int, seed: int, *,
                 mask: str = "threshold", density: float | None = None,
                 er_scale: int | None = None, init: str = "random", **arch_kw: Any) -> None:
        super().__init__(output_size=output_size, seed=seed, mask=mask, density=density,
                         er_scale=er_scale, init=init)
        self.body = arch(output_size, conv=masked_conv, norm=TaskBatchNorm2d, head=MaskedLinear,
                         **arch_kw)
        self.config = {"cls": arch.__name__, "output_size": self.output_size, "seed": self.seed,
                       "mask": mask, "density": density, "er_scale": er_scale, "init": init,
                       **self.body.settings}
        self._finish()

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


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
    """A supermask model by name (see :data:`clbench.models.MODELS`); MLPs take
    ``in_features`` inputs."""
    kw: dict[str, Any] = {"mask": mask, "density": density, "er_scale": er_scale, "init": init}
    if name in HIDDEN:
        bn = name in BATCH_STAT_BN
        return SupermaskMLP(in_features, HIDDEN[name], output_size, seed,
                            activation="swish" if bn else "relu", batch_norm=bn, **kw)
    if name in RESNETS:
        return MaskedResNet(RESNETS[name], output_size, seed, **kw)
    raise Incompatible(f"unknown model '{name}': choose one of {', '.join(MODELS)}")


def model_from_state(state: dict[str, Any]) -> SupermaskNet:
    """Rebuild a model saved with :meth:`SupermaskNet.get_state`, where a new model is built
    (the CPU, unless torch's default device says otherwise), whatever device the state's tensors
    are on; move it with ``.to()``."""
    cfg = dict(state["config"])
    cls = cfg.pop("cls")
    if cls == "SupermaskMLP":
        net: SupermaskNet = SupermaskMLP(
            cfg.pop("in_features"), cfg.pop("hidden"), cfg.pop("output_size"), cfg.pop("seed"),
            **cfg,
        )
    else:
        arch = {a.__name__: a for a in RESNETS.values()}[cls]
        net = MaskedResNet(arch, cfg.pop("output_size"), cfg.pop("seed"), **cfg)
    device = net._device
    net.store.load(state["packed"])
    for bn, means, var in zip(net.task_bns, state["bn_means"], state["bn_vars"], strict=True):
        bn.load_statistics(means, var)
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


def build_gemresnet18(
    outputs: int, *, norm: str = "shared", conv: Any = None, head: Any = None, nf: int = 20,
    generator: torch.Generator | None = None,
) -> torch.nn.Module:
    """The project's one GEM ResNet-18 (:class:`GEMResNet18`) with plain trainable layers.
    ``norm``: ``shared`` (affine BatchNorm, the reference's ``StandardBN``) or ``task``
    (non-affine, per-task running statistics: :func:`clbench.supermask.layers.add_task` before
    each task, :func:`~clbench.supermask.layers.set_task` to select). ``conv(c_in, c_out,
    kernel, stride)`` and ``head(in, out)`` replace the plain bias-free layers (e.g. BatchE's).
    Plain layers get PyTorch's default init, drawn from ``generator``."""
    model = GEMResNet18(outputs, nf=nf, conv=conv or plain_conv, head=head or plain_head,
                        norm=nn.BatchNorm2d if norm == "shared" else TaskBatchNorm2d)
    if generator is not None:
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    bound = 1 / m.weight[0].numel() ** 0.5
                    m.weight.uniform_(-bound, bound, generator=generator)
    return model

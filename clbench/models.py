"""Model names (the vocabulary) and plain trainable torch models for non-mask methods.

Mask methods build their own fixed-weight versions of the same architectures
(``clbench.methods.supermask``). Torch is imported only when a model is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from clbench.errors import ClbenchError, unknown

if TYPE_CHECKING:
    import torch

MODELS: dict[str, str] = {
    "lenet": "MLP 784-300-100-out (LeNet-300-100)",
    "fc1024": "MLP 784-1024-1024-out",
    "gemresnet18": "reduced ResNet-18 of GEM, nf=20, 32x32 RGB input",
    "resnet50": "ResNet-50 (bottleneck), 224x224 RGB input",
    "bnnet": "MLP 784-2048-2048-out, Swish, batch-statistics BatchNorm (HopSupSup)",
}

HIDDEN = {"lenet": (300, 100), "fc1024": (1024, 1024), "bnnet": (2048, 2048)}


def check_model(name: str) -> str:
    """Validate a model name, with a one-line error naming the choices."""
    if name not in MODELS:
        raise unknown("model", name, MODELS)
    return name


def build_mlp(
    name: str, in_features: int, outputs: int, generator: torch.Generator | None = None,
    *, bias: bool = True,
) -> torch.nn.Module:
    """A trainable MLP of the named shape (biases unless ``bias=False``, as the SupSup
    reference builds every layer), initialised from ``generator`` with PyTorch's default
    U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    import torch
    from torch import nn

    if name not in HIDDEN or name == "bnnet":
        raise ClbenchError(f"model '{name}' is not a plain MLP here: use lenet or fc1024")
    sizes = (in_features, *HIDDEN[name], outputs)
    layers: list[nn.Module] = [nn.Flatten()]
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        layers.append(nn.Linear(a, b, bias=bias))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    model = nn.Sequential(*layers)
    if generator is not None:
        with torch.no_grad():
            for layer in model:
                if isinstance(layer, nn.Linear):
                    bound = 1 / layer.in_features**0.5
                    layer.weight.uniform_(-bound, bound, generator=generator)
                    if layer.bias is not None:
                        layer.bias.uniform_(-bound, bound, generator=generator)
    return model


# --------------------------------------------------------------------------- trainable ResNet


def _task_batch_norm() -> type:
    from torch import nn

    class TaskBatchNorm(nn.Module):
        """Non-affine BatchNorm with one set of running statistics per task (SupSup's
        ``MultitaskNonAffineBN``); ``task`` selects them, :meth:`add_task` appends fresh ones."""

        def __init__(self, channels: int) -> None:
            super().__init__()
            self.channels, self.task = channels, 0
            self.bns = nn.ModuleList()

        def add_task(self) -> None:
            like = next(self.bns.buffers(), None)
            bn = nn.BatchNorm2d(self.channels, affine=False)
            self.bns.append(bn if like is None else bn.to(like.device))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.bns[self.task](x)

    return TaskBatchNorm


def build_gemresnet18(
    outputs: int, *, norm: str = "shared", conv: Any = None, head: Any = None, nf: int = 20,
    generator: torch.Generator | None = None,
) -> torch.nn.Module:
    """GEM's reduced ResNet-18 (BasicBlocks [2,2,2,2], widths nf·{1,2,4,8}, 3×3 stem, 32×32×3
    input), bias-free as in the SupSup reference. ``norm``: ``shared`` (affine BatchNorm, the
    reference's ``StandardBN``) or ``task`` (non-affine, per-task running statistics: call
    :func:`add_task` before each task and :func:`set_task` to select). ``conv(c_in, c_out,
    kernel, stride)`` and ``head(in, out)`` replace the plain layers (e.g. BatchE's).
    Plain layers get PyTorch's default init, drawn from ``generator``."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    task_bn = _task_batch_norm()

    def make_conv(c_in: int, c_out: int, k: int, stride: int) -> nn.Module:
        if conv is not None:
            return conv(c_in, c_out, k, stride)
        return nn.Conv2d(c_in, c_out, k, stride, k // 2, bias=False)

    def make_norm(c: int) -> nn.Module:
        return nn.BatchNorm2d(c) if norm == "shared" else task_bn(c)

    class Block(nn.Module):
        def __init__(self, c_in: int, planes: int, stride: int) -> None:
            super().__init__()
            self.conv1, self.bn1 = make_conv(c_in, planes, 3, stride), make_norm(planes)
            self.conv2, self.bn2 = make_conv(planes, planes, 3, 1), make_norm(planes)
            self.shortcut = None
            if stride != 1 or c_in != planes:
                self.shortcut = nn.Sequential(make_conv(c_in, planes, 1, stride),
                                              make_norm(planes))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
            return F.relu(out + (x if self.shortcut is None else self.shortcut(x)))

    class GEMResNet18(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Sequential(make_conv(3, nf, 3, 1), make_norm(nf))
            blocks, c_in = [], nf
            for mult, stride in ((1, 1), (2, 2), (4, 2), (8, 2)):
                for j in range(2):
                    blocks.append(Block(c_in, nf * mult, stride if j == 0 else 1))
                    c_in = nf * mult
            self.blocks = nn.Sequential(*blocks)
            self.head = head(c_in, outputs) if head is not None else nn.Linear(
                c_in, outputs, bias=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.features(x))

        def features(self, x: torch.Tensor) -> torch.Tensor:
            out = self.blocks(F.relu(self.stem(x)))
            return F.adaptive_avg_pool2d(out, 1).flatten(1)

    model = GEMResNet18()
    if generator is not None:
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    bound = 1 / m.weight[0].numel() ** 0.5
                    m.weight.uniform_(-bound, bound, generator=generator)
    return model


def add_task(model: torch.nn.Module) -> None:
    """Append fresh per-task BatchNorm statistics (no-op without per-task BN)."""
    for m in model.modules():
        if hasattr(m, "add_task") and hasattr(m, "bns"):
            m.add_task()


def set_task(model: torch.nn.Module, task: int) -> None:
    """Select task ``task``'s per-task BatchNorm statistics (no-op without per-task BN)."""
    for m in model.modules():
        if hasattr(m, "bns"):
            m.task = task


def bn_statistics(model: torch.nn.Module, per_task: bool) -> int:
    """Floats of running BatchNorm statistics (mean and var): of one task's set if
    ``per_task``, else of the model's shared BatchNorm layers."""
    from torch import nn

    count = 0
    for m in model.modules():
        if hasattr(m, "bns") and per_task:
            count += 2 * m.channels
        elif isinstance(m, nn.BatchNorm2d) and not per_task and m.affine:
            count += 2 * m.num_features
    return count

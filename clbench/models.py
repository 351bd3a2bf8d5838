"""Model names (the vocabulary, defined here once) and the plain trainable MLPs.

Mask methods build fixed-weight versions of the same architectures; ``clbench.supermask.nets``
holds the one GEM ResNet-18 every method builds (plain ones with ``build_gemresnet18``). Torch
is imported only when a model is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

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

HIDDEN = {"lenet": (300, 100), "fc1024": (1024, 1024), "bnnet": (2048, 2048)}  # the MLPs
BATCH_STAT_BN = ("bnnet",)  # MLPs with swish and batch-statistics BatchNorm
PER_TASK_BN = ("gemresnet18", "resnet50")  # per-task running BatchNorm statistics in mask methods


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

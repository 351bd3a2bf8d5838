"""The papers' run protocols that several methods share as preset options (torch-free).

``MNIST_PAPER``: SupSup's PermutedMNIST protocol (LeNet, 1000 batches of 128 per task, seed 1).
``CIFAR100_PAPER``: SupSup's SplitCIFAR100 protocol (GEM's ResNet-18, 20 tasks of 250 epochs,
seed 0).
"""

from __future__ import annotations

from typing import Any

MNIST_PAPER: dict[str, Any] = {
    "benchmark": "permuted", "dataset": "mnist", "model": "lenet", "iters": 1000,
    "batch_size": 128, "eval_batch_size": 128, "seed": 1,
}
CIFAR100_PAPER: dict[str, Any] = {
    "benchmark": "split", "model": "gemresnet18", "tasks": 20, "epochs": 250, "iters": None,
    "seed": 0,
}

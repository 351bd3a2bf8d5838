"""The papers' run protocols that several methods share as preset options (torch-free).

``MNIST_PAPER``: SupSup's PermutedMNIST protocol (LeNet, 1000 batches of 128 per task).
``CIFAR100_PAPER``: SupSup's SplitCIFAR100 protocol (GEM's ResNet-18, 20 tasks of 250 epochs).

Neither sets a seed: the seed also draws the stream (permutations, class order), and every
method must see the same stream for the same ``--seed``. The default seed is the PermutedMNIST
scripts' 1 for every method; the official SplitCIFAR100 configs use seed 0 (``--seed 0``).
"""

from __future__ import annotations

from typing import Any

MNIST_PAPER: dict[str, Any] = {
    "benchmark": "permuted", "dataset": "mnist", "model": "lenet", "iters": 1000,
    "batch_size": 128, "eval_batch_size": 128,
}
CIFAR100_PAPER: dict[str, Any] = {
    "benchmark": "split", "model": "gemresnet18", "tasks": 20, "epochs": 250, "iters": None,
}

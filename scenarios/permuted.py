"""PermutedMNIST-style streams: every task permutes the pixels with its own fixed permutation."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from clbench.benchmark import BatchTransform, Benchmark, StreamProperties, TaskDef
from clbench.registry import register_benchmark

if TYPE_CHECKING:
    import torch

    from clbench.data import Source, SourceInfo


def permutation(task: int, data_seed: int, size: int) -> torch.Tensor:
    """SupSup's rule: task ``i`` uses ``np.random.RandomState(i + data_seed).permutation``."""
    import numpy as np
    import torch

    return torch.from_numpy(np.random.RandomState(task + data_seed).permutation(size))


class Permute(BatchTransform):
    """Flatten, permute the pixels (computed on first use), restore the shape."""

    def __init__(self, mean, std, task: int, data_seed: int) -> None:
        super().__init__(mean, std)
        self.task, self.data_seed = task, data_seed
        self._perm: dict[object, torch.Tensor] = {}

    def definition(self, input_shape):
        return permutation(self.task, self.data_seed, math.prod(input_shape))

    def change(self, x, *, train, generator):
        import torch

        perm = self._perm.get(x.device)
        if perm is None:
            perm = permutation(self.task, self.data_seed, x[0].numel()).to(x.device)
            self._perm[x.device] = perm
        return torch.index_select(x.flatten(1), 1, perm).view_as(x)  # 3x faster than [:, perm]


@register_benchmark
class Permuted(Benchmark):
    name = "permuted"
    description = "each task permutes all pixels (task 0 too); RandomState(i + data_seed)"

    @classmethod
    def properties(cls, info: SourceInfo, tasks: int) -> StreamProperties:
        return StreamProperties(tasks, info.classes, info.input_shape)

    @classmethod
    def build(cls, source: Source, tasks: int, data_seed: int) -> tuple[list[TaskDef], dict]:
        info = source.info
        defs = [
            TaskDef(None, None, None, Permute(info.mean, info.std, t, data_seed),
                    {"permutation_seed": t + data_seed})
            for t in range(tasks)
        ]
        return defs, {"rule": "np.random.RandomState(task + data_seed).permutation(pixels)",
                      "data_seed": data_seed}

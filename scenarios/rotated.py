"""RotatedMNIST-style streams: task ``i`` rotates every image by ``i * (360 // tasks)`` degrees."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from clbench.benchmark import BatchTransform, Benchmark, StreamProperties, TaskDef
from clbench.errors import ClbenchError
from clbench.registry import register_benchmark

if TYPE_CHECKING:
    from clbench.data import Source, SourceInfo

MAX_TASKS = 360


def angle(task: int, tasks: int) -> int:
    """SupSup's rule: evenly spaced whole degrees, task 0 unrotated."""
    return task * (360 // tasks)


class Rotate(BatchTransform):
    """Rotate whole batches counter-clockwise (as PIL), nearest neighbour, black fill."""

    def __init__(self, mean, std, degrees: int) -> None:
        super().__init__(mean, std)
        self.degrees = degrees % 360
        self._grids: dict[tuple, object] = {}

    def definition(self, input_shape):
        return {"degrees": self.degrees}

    def change(self, x, *, train, generator):
        import torch
        import torch.nn.functional as F

        if self.degrees == 0:
            return x
        if self.degrees % 90 == 0 and x.shape[-1] == x.shape[-2]:
            return torch.rot90(x, self.degrees // 90, dims=(-2, -1))
        key = (x.device, tuple(x.shape))
        grid = self._grids.get(key)
        if grid is None:
            a = math.radians(self.degrees)
            # grid_sample maps output to input coordinates: rotate by -a to turn the image by +a
            # (y grows downwards, so a counter-clockwise turn on screen is this matrix).
            theta = torch.tensor(
                [[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0]],
                device=x.device,
            )
            grid = F.affine_grid(theta.expand(x.shape[0], 2, 3), list(x.shape), align_corners=False)
            self._grids[key] = grid
        return F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)


@register_benchmark
class Rotated(Benchmark):
    name = "rotated"
    description = "task i rotates images by i*(360//tasks) degrees (at most 360 tasks)"

    @classmethod
    def properties(cls, info: SourceInfo, tasks: int) -> StreamProperties:
        if tasks > MAX_TASKS:
            raise ClbenchError(
                f"--tasks {tasks}: rotated streams have at most {MAX_TASKS} tasks (one per degree)"
            )
        return StreamProperties(tasks, info.classes, info.input_shape)

    @classmethod
    def build(cls, source: Source, tasks: int, data_seed: int) -> tuple[list[TaskDef], dict]:
        cls.properties(source.info, tasks)
        info = source.info
        defs = [
            TaskDef(None, None, None, Rotate(info.mean, info.std, angle(t, tasks)),
                    {"degrees": angle(t, tasks)})
            for t in range(tasks)
        ]
        return defs, {"rule": "task * (360 // tasks) degrees", "angles": [angle(t, tasks)
                                                                           for t in range(tasks)]}

"""Split streams: disjoint groups of classes, relabelled ``0..C-1`` by position in the group.

MNIST-like sets and CIFAR-10 use consecutive classes (5 tasks of digit pairs); CIFAR-100 and
ImageNet use a ``data_seed`` permutation of the classes (SupSup's ``np.random.seed(seed)`` then
``np.random.permutation``). CIFAR-like training batches get the references' augmentation,
random crop with padding 4 and a horizontal flip, drawn from the run's generator.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from clbench.benchmark import BatchTransform, Benchmark, StreamProperties, TaskDef
from clbench.errors import ClbenchError
from clbench.registry import register_benchmark

if TYPE_CHECKING:
    from clbench.data import Source, SourceInfo

SHUFFLED_ORDER = {"cifar100", "imagenet"}
AUGMENTED = {"cifar10", "cifar10-jpg", "cifar100"}


class CropFlip(BatchTransform):
    """Random crop (zero padding 4) and horizontal flip of whole training batches."""

    pad = 4

    def definition(self, input_shape):
        return {"crop_pad": self.pad, "flip": 0.5}

    def change(self, x, *, train, generator):
        import torch
        import torch.nn.functional as F

        if not train:
            return x
        b, _, h, w = x.shape
        padded = F.pad(x, (self.pad,) * 4)
        dy = torch.randint(0, 2 * self.pad + 1, (b,), generator=generator).to(x.device)
        dx = torch.randint(0, 2 * self.pad + 1, (b,), generator=generator).to(x.device)
        flip = (torch.rand(b, generator=generator) < 0.5).to(x.device)
        rows = (dy.view(b, 1) + torch.arange(h, device=x.device)).view(b, 1, h, 1)
        cols = dx.view(b, 1) + torch.arange(w, device=x.device)
        cols = torch.where(flip.view(b, 1), cols.flip(1), cols).view(b, 1, 1, w)
        bi = torch.arange(b, device=x.device).view(b, 1, 1, 1)
        ci = torch.arange(x.shape[1], device=x.device).view(1, -1, 1, 1)
        return padded[bi, ci, rows, cols]


def class_order(info: SourceInfo, data_seed: int) -> list[int]:
    """The order classes are dealt into tasks."""
    if info.name not in SHUFFLED_ORDER:
        return list(range(info.classes))
    import numpy as np

    rng = np.random.RandomState(data_seed)
    return [int(c) for c in rng.permutation(info.classes)]


@register_benchmark
class Split(Benchmark):
    name = "split"
    description = "disjoint class groups per task (consecutive; shuffled by data_seed for " \
                  "cifar100/imagenet), labels 0..C-1"

    @classmethod
    def properties(cls, info: SourceInfo, tasks: int) -> StreamProperties:
        per_task = info.classes // tasks
        if per_task < 2:
            raise ClbenchError(
                f"--tasks {tasks}: {info.name} has {info.classes} classes, enough for at most "
                f"{info.classes // 2} split tasks of two classes"
            )
        return StreamProperties(tasks, per_task, info.input_shape)

    @classmethod
    def build(cls, source: Source, tasks: int, data_seed: int) -> tuple[list[TaskDef], dict]:
        import torch

        info = source.info
        per_task = cls.properties(info, tasks).classes_per_task
        order = class_order(info, data_seed)
        transform_cls = CropFlip if info.name in AUGMENTED else BatchTransform
        defs = []
        for t in range(tasks):
            group = order[t * per_task:(t + 1) * per_task]
            label_map = torch.full((info.classes,), -1, dtype=torch.long)
            label_map[torch.tensor(group)] = torch.arange(per_task)
            defs.append(TaskDef(
                train_index=torch.nonzero(label_map[source.train.y] >= 0).flatten(),
                test_index=torch.nonzero(label_map[source.test.y] >= 0).flatten(),
                label_map=label_map,
                transform=transform_cls(info.mean, info.std),
                info={"classes": group},
            ))
        description = {
            "class_order": order,
            "classes_per_task": per_task,
            "augmentation": "random crop pad 4 + horizontal flip" if transform_cls is CropFlip
            else "none",
        }
        return defs, description

"""The one batch loader: whole batches gathered from tensors, the task transform applied to the
batch, no per-sample ``__getitem__`` and no collate. Every strategy trains and is evaluated on
these batches (Avalanche's own through :mod:`clbench.avalanche`).
"""

from __future__ import annotations

import hashlib
import itertools
import os
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from clbench.benchmark import BatchTransform


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from any parts (run seed, purpose, task, ...): stable across processes."""
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def generator(*parts: object) -> torch.Generator:
    """A CPU generator seeded by :func:`derive_seed`."""
    import torch

    return torch.Generator().manual_seed(derive_seed(*parts))


class TaskData:
    """One task's rows of one split, with labels already in the run's label view.

    ``x``/``y`` are the whole split's tensors (shared by every task, uint8 on the device);
    ``rows`` selects this task's rows; ``labels`` are its labels in the view; ``task_label`` is
    what the method may see as the task id (0 when the view hides it).
    """

    def __init__(
        self,
        x: torch.Tensor,
        rows: torch.Tensor | None,
        labels: torch.Tensor,
        transform: BatchTransform,
        task_label: int,
    ) -> None:
        self.x, self.rows, self.labels = x, rows, labels
        self.transform, self.task_label = transform, task_label

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def on_disk(self) -> bool:
        """Whether samples are decoded from files (imagenet) rather than gathered from memory."""
        return hasattr(self.x, "read")

    def raw(self, positions: torch.Tensor) -> torch.Tensor:
        """uint8 samples at ``positions``: one gather from memory, or decoded from files."""
        positions = positions.to(self.labels.device)
        rows = positions if self.rows is None else self.rows[positions]
        if self.on_disk:
            return self.x.read(rows.cpu()).to(self.labels.device)
        return self.x[rows]

    def batch(
        self, positions: torch.Tensor, *, train: bool = False,
        generator: torch.Generator | None = None, raw: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The samples at ``positions`` (indices into this task), transformed as one batch;
        ``raw`` gives their uint8 pixels when already read (by a loader worker)."""
        pixels = self.raw(positions) if raw is None else raw.to(self.labels.device)
        x = self.transform(pixels, train=train, generator=generator)
        return x, self.labels[positions.to(self.labels.device)]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, int]:
        """One sample as ``(x, y, task_label)``: equal to the batch path, for Avalanche plugins
        that build their own loaders."""
        import torch

        x, y = self.batch(torch.tensor([int(i)]))
        return x[0], int(y[0]), self.task_label

    def eval_batches(self, batch_size: int, generator: torch.Generator) -> TestBatches:
        """All samples once, in an order shuffled by ``generator``, as lazy batches."""
        import torch

        order = torch.randperm(len(self), generator=generator)
        return TestBatches(self, list(order.split(batch_size)))


class TestBatches(Sequence):
    """A task's test batches, made on access (a checkpoint over many tasks would not fit in
    memory as floats). ``batches[b]`` is the input batch, ``labels(b)`` its labels, and
    ``heads(k)`` the first ``k`` images of every batch (the images that decide the task)."""

    def __init__(self, data: TaskData, chunks: list[torch.Tensor]) -> None:
        self.data, self.chunks = data, chunks

    def __len__(self) -> int:
        return len(self.chunks)

    def __getitem__(self, b: int) -> torch.Tensor:  # type: ignore[override]
        return self.data.batch(self.chunks[b])[0]

    def labels(self, b: int) -> torch.Tensor:
        return self.data.labels[self.chunks[b].to(self.data.labels.device)]

    def heads(self, k: int) -> list[torch.Tensor]:
        """The first ``k`` images of each batch, transformed in one gather."""
        import torch

        firsts = [chunk[:k] for chunk in self.chunks]
        x = self.data.batch(torch.cat(firsts))[0]
        return list(x.split([len(f) for f in firsts]))


class _FileBatches:
    """Map-style dataset whose items are whole batches of decoded pixels (for DataLoader
    workers; the transform runs afterwards, on the device, on the whole batch)."""

    def __init__(self, data: TaskData) -> None:
        self.data = data

    def __getitem__(self, positions: torch.Tensor) -> torch.Tensor:
        rows = positions if self.data.rows is None else self.data.rows.cpu()[positions]
        return self.data.x.read(rows)


class TrainLoader:
    """Training batches ``(x, y, task_labels)`` of one task; each iteration is one epoch.

    With ``iters`` an iteration yields exactly ``iters`` batches, reshuffling whenever the data
    is exhausted (1000 batches of 128 from 60,000 samples = 469 + 469 + 62, last batch of each
    pass partial, as a shuffled DataLoader gives them); with ``epochs`` it yields one pass.
    On-disk sources (imagenet) are decoded by DataLoader worker processes, a batch at a time.
    """

    def __init__(
        self, data: TaskData, batch_size: int, iters: int | None, generator: torch.Generator,
        tick: Callable[[], None] | None = None,
    ) -> None:
        self.data, self.batch_size, self.iters = data, batch_size, iters
        self.generator, self.tick = generator, tick
        self.workers = min(4, os.cpu_count() or 1)  # decoding processes for on-disk data

    def __len__(self) -> int:
        if self.iters is not None:
            return self.iters
        return -(-len(self.data) // self.batch_size)

    def _positions(self) -> Iterator[torch.Tensor]:
        import torch

        while True:
            yield from torch.randperm(len(self.data), generator=self.generator).split(
                self.batch_size
            )
            if self.iters is None:
                return

    def _raw(self) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        """Positions of each batch, with their pixels when files are decoded by workers."""
        positions = self._positions()
        if self.iters is not None:
            positions = itertools.islice(positions, self.iters)
        if not self.data.on_disk:
            for p in positions:
                yield p, None
            return
        import torch

        chunks = list(positions)  # the order is fixed before workers start
        loader = torch.utils.data.DataLoader(
            _FileBatches(self.data), sampler=chunks, batch_size=None, num_workers=self.workers,
            prefetch_factor=2 if self.workers else None,
        )
        yield from zip(chunks, loader)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        import torch

        task = None
        for positions, raw in self._raw():
            x, y = self.data.batch(positions, train=True, generator=self.generator, raw=raw)
            if task is None or len(task) != len(y):
                task = torch.full_like(y, self.data.task_label)
            if self.tick is not None:
                self.tick()
            yield x, y, task

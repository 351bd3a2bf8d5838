"""The benchmark contract: a family of task streams built from one data source.

A family declares what it can build from a source (``properties``, no torch) and builds the
tasks as lazy definitions (``build``): which rows of the source's tensors a task uses, how its
labels map to ``0..C-1``, and a transform applied to whole batches on the device.
:func:`stream_identity` hashes what was built: equal identities, equal tasks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import torch

    from clbench.data import Source, SourceInfo


@dataclass(frozen=True)
class StreamProperties:
    """What methods may require of a stream."""

    tasks: int
    classes_per_task: int
    input_shape: tuple[int, int, int]


class BatchTransform:
    """uint8 batch ``[B, C, H, W]`` → normalised float batch; subclasses add a task's change.

    Normalisation commutes with pixel permutations; rotations act on raw [0, 1] pixels so that
    the fill value is black, as PIL does.
    """

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        self.mean = mean
        self.std = std
        self._stats: dict[Any, tuple[torch.Tensor, torch.Tensor]] = {}

    def __call__(
        self, x: torch.Tensor, *, train: bool = False, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        x = self.change(x.float().div_(255.0), train=train, generator=generator)
        return self.normalise(x)

    def change(
        self, x: torch.Tensor, *, train: bool, generator: torch.Generator | None
    ) -> torch.Tensor:
        """The task's own change of the [0, 1] batch (identity here)."""
        return x

    def definition(self, input_shape: tuple[int, ...]) -> Any:
        """What defines this transform for the stream identity (JSON data or a tensor):
        a permutation, an angle, an augmentation; None for none."""
        return None

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        import torch

        key = (x.device, x.shape[1])
        if key not in self._stats:
            shape = (1, -1, 1, 1)
            self._stats[key] = (
                torch.tensor(self.mean, device=x.device).view(shape),
                torch.tensor(self.std, device=x.device).view(shape),
            )
        mean, std = self._stats[key]
        return x.sub_(mean).div_(std)


@dataclass
class TaskDef:
    """One task, lazily: rows of the source splits, a label map and a batch transform."""

    train_index: torch.Tensor | None  # rows of source.train; None: all rows
    test_index: torch.Tensor | None
    label_map: torch.Tensor | None  # source label -> task label; None: identity
    transform: BatchTransform
    info: dict[str, Any] = field(default_factory=dict)


class Benchmark:
    """Base class of stream families. Register subclasses with ``@register_benchmark``."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    source: ClassVar[str] = "built-in"

    @classmethod
    def properties(cls, info: SourceInfo, tasks: int) -> StreamProperties:
        """What the stream will look like; raise ClbenchError for impossible requests."""
        raise NotImplementedError

    @classmethod
    def build(cls, source: Source, tasks: int, data_seed: int) -> tuple[list[TaskDef], dict]:
        """The task definitions and a JSON description of the stream for the record."""
        raise NotImplementedError


def stream_identity(defs: list[TaskDef], source: Source) -> str:
    """A hash of the tasks a benchmark built on ``source``: the source's checksum, and per task
    its rows, label map and transform (class and :meth:`BatchTransform.definition`). Neither the
    scenario, the method nor the network's seed enters it: runs with equal identities saw the
    same stream."""
    import hashlib
    import json

    import torch

    digest = hashlib.sha256()

    def feed(value: Any) -> None:
        if isinstance(value, torch.Tensor):
            data = value.detach().cpu().to(torch.int64).contiguous().numpy().tobytes()
        else:
            data = json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
        digest.update(len(data).to_bytes(8, "little") + data)

    feed([source.info.name, source.identity.get("checksum"), len(defs)])
    for task in defs:
        for part in (task.train_index, task.test_index, task.label_map):
            feed("all" if part is None else part)
        feed(type(task.transform).__name__)
        feed(task.transform.definition(source.info.input_shape))
    return digest.hexdigest()[:16]

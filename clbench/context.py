"""What a method gets at run time: the config, the stream's properties and its data.

The context turns the benchmark's lazy task definitions into :class:`TaskData` in the run's label
view, on the run's device, and hands out training loaders and test batches whose order comes
from generators seeded by the config.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from clbench.loader import TaskData, TestBatches, TrainLoader, generator

if TYPE_CHECKING:
    import torch

    from clbench.benchmark import StreamProperties, TaskDef
    from clbench.config import RunConfig
    from clbench.data import Source
    from clbench.scenarios.taxonomy import Scenario


class RunContext:
    """One run's config, scenario, stream and device, as a method sees them."""

    cache_size = 8  # task views kept built (labels and row indices), most recent first

    def __init__(
        self,
        config: RunConfig,
        scenario: Scenario,
        props: StreamProperties,
        source: Source,
        task_defs: list[TaskDef],
        device: torch.device,
        tick: Callable[[], None] | None = None,
    ) -> None:
        self.config, self.scenario, self.props = config, scenario, props
        self.params: dict[str, Any] = config.params
        self.label_view = config.label_view
        self.device = device
        self.tick = tick
        self._defs = task_defs
        self._x = {name: split.x.to(device) if hasattr(split, "x") else split  # files: as is
                   for name, split in (("train", source.train), ("test", source.test))}
        self._y = {"train": source.train.y.to(device), "test": source.test.y.to(device)}
        self._cache: OrderedDict[tuple[int, str], TaskData] = OrderedDict()

    @property
    def outputs(self) -> int:
        """Output units a single head needs in this view: C, or T*C class-incrementally."""
        per_task = self.props.classes_per_task
        return per_task * self.props.tasks if self.label_view == "class-incremental" else per_task

    @property
    def task_ids_in_training(self) -> bool:
        """Whether the method sees task ids while training."""
        return self.scenario.task_id_train and self.label_view == "task"

    def generator(self, *purpose: object) -> torch.Generator:
        """A CPU generator seeded by the run seed and a purpose, e.g. ``("scores", 3)``."""
        return generator(self.config.seed, *purpose)

    def classes_of(self, index: int) -> set[int]:
        """The labels task ``index`` uses in this view."""
        per_task = self.props.classes_per_task
        offset = index * per_task if self.label_view == "class-incremental" else 0
        return set(range(offset, offset + per_task))

    def task_data(self, index: int, split: str) -> TaskData:
        """Task ``index``'s ``train``, ``val`` or ``test`` data in the run's label view."""
        key = (index, split)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        data = self._build(index, split)
        self._cache[key] = data
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return data

    def _build(self, index: int, split: str) -> TaskData:
        import torch

        task = self._defs[index]
        base = "test" if split == "test" else "train"
        rows = task.test_index if base == "test" else task.train_index
        fraction = self.config.val_fraction
        if base == "train" and fraction > 0:
            total = len(self._y["train"]) if rows is None else len(rows)
            order = torch.randperm(total, generator=generator(self.config.data_seed, "val", index))
            held = order[: max(1, round(fraction * total))].sort().values
            kept = order[len(held):].sort().values
            chosen = held if split == "val" else kept
            rows = chosen if rows is None else rows[chosen]
        if rows is not None:
            rows = rows.to(self.device)
        labels = self._y[base] if rows is None else self._y[base][rows]
        if task.label_map is not None:
            labels = task.label_map.to(self.device)[labels]
        if self.label_view == "class-incremental":
            labels = labels + index * self.props.classes_per_task
        visible = self.task_ids_in_training if split != "test" else self.label_view == "task"
        transform = task.transform
        return TaskData(self._x[base], rows, labels, transform, index if visible else 0)

    def train_loader(self, index: int) -> TrainLoader:
        """Training batches of task ``index`` for the configured iterations or epochs."""
        return TrainLoader(
            self.task_data(index, "train"), self.config.batch_size, self.config.iters,
            self.generator("train", index), self.tick,
        )

    def test_batches(self, index: int, point: int) -> TestBatches:
        """Task ``index``'s test set at the evaluation point after ``point`` tasks, shuffled by
        (seed, point, task)."""
        return self.task_data(index, "test").eval_batches(
            self.config.eval_batch_size, self.generator("test", point, index)
        )

    def val_batches(self, index: int) -> TestBatches | list:
        """Task ``index``'s held-out validation split (empty without ``--val-fraction``)."""
        if self.config.val_fraction <= 0:
            return []
        return self.task_data(index, "val").eval_batches(
            self.config.eval_batch_size, self.generator("val-order", index)
        )

"""The Avalanche seam: clbench task data as an Avalanche benchmark, and strategies fed by the
clbench batch loader. Avalanche is imported here and in methods that are Avalanche strategies,
nowhere else.

Experiences are made on demand from lazy views (the shared uint8 tensor plus the task's rows,
labels and transform), with task labels and class timelines set directly, so a 1,000-task
stream costs nothing until an experience is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from clbench.loader import TaskData

if TYPE_CHECKING:
    from clbench.context import RunContext


class _Samples:
    """``torch.utils.data.Dataset`` over a :class:`TaskData` (single samples, for plugins)."""

    def __init__(self, data: TaskData) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        x, y, _ = self.data[i]
        return x, y


def avalanche_dataset(data: TaskData) -> Any:
    """A task-aware Avalanche classification dataset whose samples are ``(x, y, task_label)``
    (task-aware, with ``task_set``, because strategies such as LwF read it)."""
    from avalanche.benchmarks.utils import ConstantSequence, DataAttribute
    from avalanche.benchmarks.utils.classification_dataset import (
        TaskAwareSupervisedClassificationDataset,
    )
    from avalanche.benchmarks.utils.data_attribute import TaskLabels

    return TaskAwareSupervisedClassificationDataset(
        [_Samples(data)],
        data_attributes=[
            DataAttribute(data.labels.tolist(), "targets"),
            TaskLabels(ConstantSequence(data.task_label, len(data))),
        ],
    )


def build_benchmark(ctx: RunContext) -> Any:
    """The run's Avalanche benchmark, with ``train_stream`` and ``test_stream``."""
    from avalanche.benchmarks.scenarios.dataset_scenario import DatasetExperience
    from avalanche.benchmarks.scenarios.generic_scenario import CLScenario, SequenceCLStream

    class LazyStream(SequenceCLStream):
        def __init__(self, name: str, split: str) -> None:
            self.split = split
            super().__init__(name, benchmark=None)

        def _full_length(self) -> int:
            return ctx.props.tasks

        def _make_experience(self, index: int) -> Any:
            data = ctx.task_data(index, self.split)
            exp = DatasetExperience(dataset=avalanche_dataset(data), current_experience=index)
            exp.task_label = data.task_label
            exp.task_labels = [data.task_label]
            classes = ctx.classes_of(index)
            seen = set().union(*(ctx.classes_of(i) for i in range(index + 1)))
            every = set().union(*(ctx.classes_of(i) for i in range(ctx.props.tasks)))
            exp.classes_in_this_experience = classes
            exp.previous_classes = seen - classes if index else set()
            exp.classes_seen_so_far = seen
            exp.future_classes = every - seen
            exp.origin_stream = self
            return exp

    streams = [LazyStream("train", "train"), LazyStream("test", "test")]
    scenario = CLScenario(streams)
    for stream in streams:
        stream.benchmark = scenario
    return scenario


class FastLoaderMixin:
    """Put before an Avalanche strategy class: its train and eval loaders become clbench's.

    This is the one place Avalanche's data-loader hooks are overridden. ``clbench_ctx`` must be
    set on the strategy before training.
    """

    clbench_ctx: RunContext

    def make_train_dataloader(self, *args: Any, **kwargs: Any) -> None:
        self.dataloader = self.clbench_ctx.train_loader(self.experience.current_experience)

    def make_eval_dataloader(self, *args: Any, **kwargs: Any) -> None:
        index = self.experience.current_experience
        batches = self.clbench_ctx.test_batches(index, checkpoint=0)
        label = batches.data.task_label
        self.dataloader = [
            (x, batches.labels(b), torch_full_like(batches.labels(b), label))
            for b, x in enumerate(batches)
        ]


def torch_full_like(y: Any, value: int) -> Any:
    import torch

    return torch.full_like(y, value)


_fast_classes: dict[type, type] = {}


def fast_strategy(cls: type) -> type:
    """The Avalanche strategy class ``cls`` fed by the clbench loader."""
    if cls not in _fast_classes:
        _fast_classes[cls] = type(cls.__name__, (FastLoaderMixin, cls), {})
    return _fast_classes[cls]


def quiet_evaluator() -> Any:
    """An evaluation plugin with no metrics and no loggers (clbench scores runs itself)."""
    import warnings

    from avalanche.training.plugins import EvaluationPlugin

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "No loggers specified")
        return EvaluationPlugin(loggers=[])

"""The Avalanche seam: the only clbench module that imports Avalanche (lazily), besides methods
that are Avalanche strategies.

* The Avalanche streams (:func:`avalanche_streams`): clbench task data as Avalanche's train and
  test streams with task labels. Experiences are made on demand from lazy views (the shared
  uint8 tensor plus the task's rows, labels and transform), with task labels and class
  timelines set directly, so a 1,000-task stream costs nothing until an experience is used.
* Strategies as methods (:class:`AvalancheMethod`): an Avalanche strategy class on a plain
  model, its train and eval loaders replaced by clbench's batch loader
  (:func:`fast_strategy`), evaluated batch by batch by a default adapter.

Importing this module imports neither torch nor Avalanche: method declarations are read by
``clbench list``. ``clbench.strategy`` re-exports the method half for plugins written against it.
"""

from __future__ import annotations

import sys
from math import prod
from typing import TYPE_CHECKING, Any, ClassVar

from clbench.loader import TaskData
from clbench.method import Answer, Bytes, EvalRequest, Method
from clbench.params import Param

if TYPE_CHECKING:
    from clbench.context import RunContext


# --------------------------------------------------------------------------- the Avalanche streams


def import_avalanche() -> None:
    """Import Avalanche (once) without jax.

    ``import avalanche`` loads its training package, whose GEM plugin imports qpsolvers, which
    imports jax for two solvers GEM never asks for (it uses quadprog): its import time and
    150 MB in every run, and a jax callback in every garbage collection. jax is hidden while
    Avalanche loads, so qpsolvers lists those two solvers as missing; ``import jax`` later
    works as usual, and a process that has already imported jax keeps it.
    """
    if "avalanche" in sys.modules:
        return
    hide = "jax" not in sys.modules
    if hide:
        sys.modules["jax"] = None  # type: ignore[assignment]  # "import jax" raises ImportError
    try:
        import avalanche.training  # noqa: F401 - the package and its plugins, once
    finally:
        if hide and "jax" in sys.modules and sys.modules["jax"] is None:
            del sys.modules["jax"]


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


def avalanche_streams(ctx: RunContext) -> Any:
    """The run's Avalanche streams: one Avalanche scenario object with ``train_stream`` and
    ``test_stream`` (what Avalanche calls a benchmark), experiences made on demand."""
    import_avalanche()
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
        batches = self.clbench_ctx.test_batches(index, point=0)
        label = batches.data.task_label
        self.dataloader = [
            (x, batches.labels(b), torch_full_like(batches.labels(b), label))
            for b, x in enumerate(batches)
        ]


def torch_full_like(y: Any, value: int) -> Any:
    import torch

    return torch.full_like(y, value)


class ObservedLossMixin:
    """Put before an Avalanche strategy class in a run logged live: after each backward pass,
    the strategy's loss (``self.loss``, penalties included) goes to the loss observer
    (:func:`clbench.training.observe_losses`), as a native method's step loss does."""

    loss: Any

    def backward(self) -> None:
        super().backward()  # type: ignore[misc]
        from clbench.training import loss_observer

        observe = loss_observer()
        if observe is not None:
            observe(self.loss)


_fast_classes: dict[tuple[type, bool], type] = {}


def fast_strategy(cls: type, observed: bool = False) -> type:
    """The Avalanche strategy class ``cls`` fed by the clbench loader (and, ``observed``, its
    losses given to the loss observer of a run logged live)."""
    key = (cls, observed)
    if key not in _fast_classes:
        mixins = (ObservedLossMixin, FastLoaderMixin) if observed else (FastLoaderMixin,)
        _fast_classes[key] = type(cls.__name__, (*mixins, cls), {})
    return _fast_classes[key]


def quiet_evaluator() -> Any:
    """An evaluation plugin with no metrics and no loggers (clbench scores runs itself)."""
    import warnings

    from avalanche.training.plugins import EvaluationPlugin

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "No loggers specified")
        return EvaluationPlugin(loggers=[])


# --------------------------------------------------------------------------- strategies as methods


OPTIMIZER_PARAMS = (
    Param("optimizer", str, "sgd", "optimizer of the trained weights", choices=("sgd", "adam",
                                                                                 "rmsprop")),
    Param("lr", float, 0.01, "learning rate (--lr)", low=0.0),
    Param("momentum", float, 0.9, "SGD momentum", low=0.0, high=1.0),
    Param("weight_decay", float, 0.0, "weight decay", low=0.0),
)


def parameter_count(model: Any) -> int:
    """Trainable tensors' elements (parameters) of a model."""
    return sum(p.numel() for p in model.parameters())


def build_plain_model(ctx: Any, *, bias: bool = True) -> Any:
    """The run's model as a plain trainable torch model: an MLP (``lenet``, ``fc1024``) or
    GEM's ResNet-18 with shared affine BatchNorm (``gemresnet18``)."""
    from clbench.models import build_mlp
    from clbench.supermask.nets import build_gemresnet18

    if ctx.config.model == "gemresnet18":
        return build_gemresnet18(ctx.outputs, generator=ctx.generator("model"))
    in_features = prod(ctx.props.input_shape)
    return build_mlp(ctx.config.model, in_features, ctx.outputs, ctx.generator("model"),
                     bias=bias)


class _EpochChunks:
    """One task's ``iters`` batches dealt out as ``epochs`` Avalanche epochs of ⌈iters/epochs⌉
    batches (the last one shorter), from one continuing clbench loader."""

    def __init__(self, loader: Any, epochs: int) -> None:
        self.batches, self.size = iter(loader), -(-len(loader) // epochs)
        self.length = len(loader)

    def __iter__(self) -> Any:
        for _ in range(self.size):
            try:
                yield next(self.batches)
            except StopIteration:
                return

    def __len__(self) -> int:
        return self.size


class AvalancheMethod(Method):
    """An Avalanche strategy class (by name in ``avalanche.training``) on a plain model.

    Subclasses set ``strategy_class`` and may override :meth:`strategy_kwargs`,
    :meth:`plugins`, :meth:`wrap_model` and :meth:`stored` (bytes beyond the model's fp32
    parameters). Iterations to epochs: one Avalanche epoch is one pass of the clbench loader;
    with ``--iters N`` that pass is exactly N batches (``train_epochs=1``), unless the strategy
    needs several epochs (``epochs_with_iters`` > 1: the N batches are dealt into that many
    epochs of ⌈N/epochs⌉ batches, so the budget stays N); with ``--epochs E`` it is one pass
    over the data (``train_epochs=E``). Models: ``lenet``, ``fc1024`` (MLPs with biases) and
    ``gemresnet18`` (shared affine BatchNorm).
    """

    strategy_class: ClassVar[str] = "Naive"
    independent_requests = True  # one forward pass per batch (a subclass overriding predict
    # to pool requests must set it False)
    models = ("lenet", "fc1024", "gemresnet18")
    params = OPTIMIZER_PARAMS
    bytes_rules = {"fp32": "fp32-parameters: 4 bytes per model parameter (one shared model)"}

    def __init__(self, ctx: Any) -> None:
        super().__init__(ctx)
        import_avalanche()
        import avalanche.training
        import torch

        from clbench.training import loss_observer, make_optimizer

        torch.manual_seed(ctx.generator("global").initial_seed())  # plugins that use it
        self.model = self.wrap_model(build_plain_model(ctx))
        config = ctx.config
        cls = fast_strategy(getattr(avalanche.training, self.strategy_class),
                            observed=loss_observer() is not None)
        epochs = config.epochs or self.epochs_with_iters()
        if config.epochs is None and epochs > 1:
            cls = type(cls.__name__, (_ChunkedLoaderMixin, cls), {})
        plugins = self.plugins()
        self.strategy = cls(
            model=self.model,
            optimizer=make_optimizer(self.model.parameters(), ctx.params),
            criterion=torch.nn.CrossEntropyLoss(),
            train_mb_size=config.batch_size,
            train_epochs=epochs,
            eval_mb_size=config.eval_batch_size,
            device=ctx.device,
            evaluator=quiet_evaluator(),
            **({"plugins": plugins} if plugins else {}),
            **self.strategy_kwargs(),
        )
        self.strategy.clbench_ctx = ctx
        self.strategy.clbench_epochs = epochs

    def wrap_model(self, model: Any) -> Any:
        """The model the strategy trains (PackNet wraps it)."""
        return model

    def epochs_with_iters(self) -> int:
        """Avalanche epochs one task's ``--iters`` batches are dealt into."""
        return 1

    def strategy_kwargs(self) -> dict[str, Any]:
        """Extra keyword arguments of the Avalanche strategy (from params)."""
        return {}

    def plugins(self) -> list[Any]:
        """Extra Avalanche plugins."""
        return []

    def train_experience(self, experience: Any) -> None:
        self.strategy.train(experience)

    def logits(self, x: Any, task: int) -> Any:
        import torch
        from avalanche.models.utils import avalanche_forward

        return avalanche_forward(self.model, x, torch.full((len(x),), task, device=x.device))

    def predict(self, requests: list[EvalRequest]) -> list[Answer]:
        """The default adapter: one forward pass per batch; with the task given in the
        class-incremental view, the task's own classes only."""
        import torch

        self.model.eval()
        per_task = self.ctx.props.classes_per_task
        incremental = self.ctx.label_view == "class-incremental"
        answers = []
        with torch.no_grad():
            for request in requests:
                visible = request.task if request.task is not None and not incremental else 0
                predictions = []
                for x in request.batches:
                    out = self.logits(x, visible if self.ctx.label_view == "task" else 0)
                    if incremental and request.task is not None:
                        low = request.task * per_task
                        predictions.append(out[:, low:low + per_task].argmax(1) + low)
                    else:
                        predictions.append(out.argmax(1))
                answers.append(Answer(predictions))
        self.model.train()
        return answers

    def stored(self) -> dict[str, int]:
        """Bytes stored beyond the fp32 model, per encoding of :attr:`bytes_rules`."""
        return {"fp32": 0}

    def bytes(self) -> dict[str, Bytes]:
        params = 4 * parameter_count(self.model)
        return {enc: Bytes(params + extra, self.bytes_formula(enc))
                for enc, extra in self.stored().items()}

    def bytes_formula(self, encoding: str) -> str:
        """The formula id recorded with the bytes (the rule's text before the colon)."""
        return self.bytes_rules[encoding].split(":")[0]

    def plugin(self, class_name: str) -> Any:
        """The strategy's plugin of that class name."""
        return next(p for p in self.strategy.plugins if type(p).__name__ == class_name)

    @property
    def sample_bytes(self) -> int:
        """Bytes of one stored training sample: uint8 pixels plus an int64 label."""
        return prod(self.ctx.props.input_shape) + 8


class _ChunkedLoaderMixin:
    """Deal one task's ``--iters`` batches into ``clbench_epochs`` Avalanche epochs."""

    def make_train_dataloader(self, *args: Any, **kwargs: Any) -> None:
        loader = self.clbench_ctx.train_loader(self.experience.current_experience)
        self.dataloader = _EpochChunks(loader, self.clbench_epochs)


def _replay_plugin_class() -> type:
    from avalanche.training.plugins import ReplayPlugin

    class ClbenchReplayPlugin(ReplayPlugin):
        """Avalanche's ReplayPlugin (experience-balanced buffer, filled from the experience's
        dataset after each task), but each clbench training batch is concatenated with a
        buffer batch of the same size instead of swapping in a ``ReplayDataLoader``."""

        def __init__(self, ctx: Any, mem_size: int) -> None:
            super().__init__(mem_size=mem_size)
            self.ctx = ctx

        def before_training_exp(self, strategy: Any, **kwargs: Any) -> None:
            if len(self.storage_policy.buffer) == 0:
                return
            index = strategy.experience.current_experience
            strategy.dataloader = _ReplayMix(
                strategy.dataloader, self.storage_policy.buffer, strategy.train_mb_size,
                self.ctx.generator("replay", index),
            )

    return ClbenchReplayPlugin


class _ReplayMix:
    """Each batch of ``loader`` followed by ``size`` buffer samples (drawn without replacement,
    reshuffled when the buffer is used up), read one at a time from the buffer."""

    def __init__(self, loader: Any, buffer: Any, size: int, generator: Any) -> None:
        self.loader, self.buffer, self.size, self.generator = loader, buffer, size, generator

    def __len__(self) -> int:
        return len(self.loader)

    def _memory(self) -> Any:
        import torch

        while True:
            order = torch.randperm(len(self.buffer), generator=self.generator)
            for chunk in order.split(self.size):
                samples = [self.buffer[int(i)] for i in chunk]
                yield [torch.stack([s[0] for s in samples]),
                       torch.tensor([int(s[1]) for s in samples]),
                       torch.tensor([int(s[2]) for s in samples])]

    def __iter__(self) -> Any:
        import torch

        memory = self._memory()
        for x, y, t in self.loader:
            mx, my, mt = next(memory)
            yield (torch.cat([x, mx.to(x.device)]), torch.cat([y, my.to(y.device)]),
                   torch.cat([t, mt.to(t.device)]))


def __getattr__(name: str) -> Any:
    if name == "ClbenchReplayPlugin":  # built lazily: Avalanche is imported only when used
        cls = _replay_plugin_class()
        globals()[name] = cls
        return cls
    raise AttributeError(name)

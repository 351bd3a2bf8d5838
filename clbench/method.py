"""The method contract: what a method declares (no torch needed) and what it does at run time.

A method is one class. Its class attributes are its declaration, readable by ``clbench list``
without importing torch or Avalanche. At run time the engine builds it with a :class:`RunContext`,
hands it one Avalanche experience at a time, and asks it for predictions on whole test batches.
The engine owns the test streams, the scoring and the accuracy matrices.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from clbench.errors import Incompatible
from clbench.params import Param

if TYPE_CHECKING:
    import torch

    from clbench.benchmark import StreamProperties
    from clbench.context import RunContext
    from clbench.loader import TestBatches


@dataclass(frozen=True)
class Requirements:
    """What a method needs of a benchmark, by properties, never by benchmark name."""

    input_shapes: tuple[tuple[int, int, int], ...] | None = None  # None: any shape
    max_classes_per_task: int | None = None
    max_tasks: int | None = None


@dataclass(frozen=True)
class Preset:
    """Run options and params a method uses by default where ``when`` matches.

    ``when`` keys are run options (``scenario``, ``benchmark``, ``model``, ``dataset``) or
    ``preset`` (a named protocol chosen with ``--preset``). Later presets override earlier ones;
    options the user gives always win.
    """

    when: dict[str, str]
    options: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    note: str = ""


@dataclass
class EvalRequest:
    """One task's test batches at one checkpoint; ``task`` is None when it must be inferred.

    ``batches`` is a lazy sequence (:class:`clbench.loader.TestBatches`): ``batches[b]`` builds
    batch ``b`` on access and ``batches.heads(k)`` gives the first ``k`` images of every batch.
    """

    task: int | None
    batches: TestBatches


@dataclass
class Answer:
    """Predictions for one :class:`EvalRequest`.

    ``predictions``: one label tensor per batch, in the run's label view. ``tasks``: the task
    inferred per batch (one decision per batch), or None when the method did not infer one.
    ``variants``: for methods that evaluate several ways from one training run (e.g. SupSup's
    objectives ``H`` and ``G``), one Answer per variant name instead.
    """

    predictions: list[torch.Tensor] = field(default_factory=list)
    tasks: list[int] | None = None
    variants: dict[str, Answer] | None = None


@dataclass(frozen=True)
class Bytes:
    """The size of what a method stores, in one encoding, with the id of its formula."""

    bytes: int
    formula: str


class Method:
    """Base class of every method (built-in or plugin). Subclass it and register it.

    Declaration (class attributes): ``name``, ``description``, ``scenarios``, ``models``,
    ``requires``, ``params``, ``primary_lr``, ``uses_density``, ``infers_task``, ``presets``,
    ``bytes_rules``, ``variants_param``, ``independent_requests``. Behaviour:
    ``__init__(ctx)``, :meth:`train_experience`, :meth:`predict`, :meth:`bytes`,
    :meth:`extras`; :meth:`check` adds refusals that depend on params or options.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    scenarios: ClassVar[frozenset[str]] = frozenset({"gg"})
    models: ClassVar[tuple[str, ...]] = ("lenet",)
    requires: ClassVar[Requirements] = Requirements()
    params: ClassVar[tuple[Param, ...]] = ()
    primary_lr: ClassVar[str | None] = "lr"
    uses_density: ClassVar[bool] = False
    infers_task: ClassVar[bool] = False
    presets: ClassVar[tuple[Preset, ...]] = ()
    bytes_rules: ClassVar[dict[str, str]] = {}
    variants_param: ClassVar[str | None] = None  # a multiple-valued param naming eval variants
    #: True when :meth:`predict` answers each request as it would alone (no pooling across
    #: requests, no state that counts calls or request positions): the evaluator may then split
    #: an evaluation point into slices of tasks and checkpoint between them. False (the safe
    #: default for plugins): every evaluation point is one call per part, as before.
    independent_requests: ClassVar[bool] = False
    source: ClassVar[str] = "built-in"  # set by the registry: built-in, entry point or plugin path

    @classmethod
    def check(
        cls, options: dict[str, Any], params: dict[str, Any], props: StreamProperties
    ) -> None:
        """Refuse (raise :class:`Incompatible`) settings the declaration cannot express."""

    @classmethod
    def variants(cls, params: dict[str, Any]) -> list[str]:
        """The evaluation variants one run produces (one accuracy matrix each)."""
        if cls.variants_param is None:
            return ["default"]
        return list(params[cls.variants_param])

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx

    def train_experience(self, experience: Any) -> None:
        """Learn one Avalanche experience (batches come from ``self.ctx.train_loader``)."""
        raise NotImplementedError

    def predict(self, requests: list[EvalRequest]) -> list[Answer]:
        """Answer every request; many tasks come at once, to batch decisions (all of an
        evaluation point's, unless :attr:`independent_requests` lets the evaluator slice it)."""
        raise NotImplementedError

    def bytes(self) -> dict[str, Bytes]:
        """What the method stores now, per encoding (empty when unknown)."""
        return {}

    def extras(self) -> dict[str, Any]:
        """Method-specific results for the record (documented keys)."""
        return {}

    def state_dict(self) -> dict[str, Any] | None:
        """Everything learned so far, for a checkpoint after a task; None: cannot checkpoint
        (the run then restarts from the first task when interrupted, and says so).

        Only tensors, numbers, strings, lists, tuples and dicts of them (a checkpoint is loaded
        with ``weights_only=True``). Generators need not be saved when, like the context's,
        they are seeded per task; any other random state must be.
        """
        return None

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` into a method freshly built with the same context."""
        raise NotImplementedError(f"{self.name} cannot resume from a checkpoint")


def refuse(message: str) -> None:
    """Raise the one-line compatibility error."""
    raise Incompatible(message)

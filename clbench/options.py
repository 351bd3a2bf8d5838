"""The options table: every option of ``clbench run`` and ``clbench sweep``, declared once.

Each :class:`Option` says its name, type, default, help, which commands take it and whether it
enters the run id. The command line builds both commands' signatures from it, the config takes
its defaults from it, and a sweep types its ``--grid`` values and file keys by it. Torch-free
and Typer-free: plain data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

RUN, SWEEP = "run", "sweep"  # the commands built from the table (list and report borrow two)
BOTH = (RUN, SWEEP)


@dataclass(frozen=True)
class Option:
    """One command-line option.

    ``setting`` marks a run setting: the user's value (None when not given) is resolved with
    ``default`` and the method's presets into the run config, and a sweep may fix or vary it by
    name. Other options are given to the command as typed (``default`` is their command-line
    default). ``run_id`` says whether the option's value enters the run id (directly, or as
    ``lr``, ``sparsity``, ``param``, ``preset`` and ``plugin`` do, through what they set).
    On the command line an option is ``--`` + its name with dashes (``--name/--no-name`` for
    a ``bool``); a ``list`` option repeats.
    """

    name: str
    type: type
    help: str
    commands: tuple[str, ...] = BOTH
    setting: bool = False
    run_id: bool = False
    default: Any = None
    required: bool = False


def _setting(name: str, kind: type, help: str, default: Any = None) -> Option:
    return Option(name, kind, help, setting=True, run_id=True, default=default)


TABLE: tuple[Option, ...] = (
    Option("method", str, "method to run (clbench list methods)", (RUN,), run_id=True,
           required=True),
    Option("method", list, "method (repeatable; or --grid method=a,b)", (SWEEP,), run_id=True),
    Option("grid", list, "an option or param.NAME with several values: name=v1,v2 "
           "(repeatable)", (SWEEP,), run_id=True),
    Option("file", str, "YAML sweep file: option names as keys, lists vary (the command line "
           "wins)", (SWEEP,), run_id=True),
    Option("dry_run", bool, "print the plan (exists / to run / refused) and stop", (SWEEP,),
           default=False),
    Option("executor", str, "local (worker processes) or ray", (SWEEP,), default="local"),
    Option("workers", int, "local worker processes", (SWEEP,), default=1),
    Option("address", str, "Ray cluster to join [default: $RAY_ADDRESS, else start a local "
           "one]", (SWEEP,)),
    Option("connect_timeout", float, "seconds to wait for the Ray cluster at --address to "
           "answer", (SWEEP,), default=30.0),
    Option("verbose", bool, "show Ray's own log lines instead of writing them to a log file",
           (SWEEP,), default=False),
    _setting("scenario", str, "gg, gns, gnu or nns [default: gg or the method's preset]", "gg"),
    _setting("benchmark", str, "permuted, rotated or split", "permuted"),
    _setting("dataset", str, "data source (clbench list datasets)", "mnist"),
    _setting("model", str, "model (clbench list models)", "lenet"),
    _setting("tasks", int, "number of tasks", 10),
    _setting("iters", int, "training batches per task", 1000),
    _setting("epochs", int, "training epochs per task (instead of --iters)"),
    _setting("batch_size", int, "training batch size", 128),
    _setting("eval_batch_size", int, "test batch size (task inference decides per batch)", 128),
    _setting("lr", float, "the method's primary learning rate"),
    Option("param", list, "method param name=value (repeatable)", run_id=True),
    _setting("density", float, "fraction of weights kept, in (0, 1]"),
    _setting("sparsity", float, "1 - density"),
    _setting("label_view", str, "task, domain or class-incremental"),
    _setting("seed", int, "run seed; the stream's too unless --data-seed (every method: the "
             "paper's 1)", 1),
    _setting("data_seed", int, "stream seed [default: --seed]"),
    _setting("threads", int, "torch threads [default: all cores; in a sweep, cores / workers]"),
    _setting("device", str, "cpu, cuda or cuda:N", "cpu"),
    _setting("eval_at", str, "task counts to evaluate after, e.g. 10,50; all; end"),
    _setting("val_fraction", float, "held-out validation part of each task's training data",
             0.0),
    Option("preset", str, "a named protocol of the method, e.g. paper", run_id=True),
    Option("data_root", str, "data folder [default: $CLBENCH_DATA or ~/.cache/clbench/data]"),
    Option("download", bool, "download missing datasets with torchvision", default=False),
    Option("results", str, "results folder [default: $CLBENCH_RESULTS or results/]",
           (RUN, SWEEP, "report")),
    Option("tag", list, "experiment name kept in the record (repeatable)"),
    Option("plugin", list, "a Python file adding methods or benchmarks (repeatable)",
           (RUN, SWEEP, "list"), run_id=True),
    Option("force", bool, "run even if a complete record exists (drops its checkpoint)", (RUN,),
           default=False),
    Option("progress", bool, "show a progress bar", (RUN,), default=True),
    Option("log", list, "log live to tensorboard, wandb (offline unless $WANDB_MODE) or csv, "
           "in the run folder's logs/ (repeatable)"),
    Option("log_every", int, "with --log: the training loss every N steps (mean of the N) "
           "[default: 50]"),
)

#: The run settings by name, in the table's order.
SETTINGS: dict[str, Option] = {o.name: o for o in TABLE if o.setting}


def for_command(command: str) -> list[Option]:
    """The options ``command`` takes, in the table's order (the order ``--help`` shows)."""
    return [o for o in TABLE if command in o.commands]


def option(name: str, command: str = RUN) -> Option:
    """The option ``name`` as ``command`` takes it."""
    return next(o for o in TABLE if o.name == name and command in o.commands)


def defaults() -> dict[str, Any]:
    """Every run setting's default (None where a setting has none of its own)."""
    return {o.name: o.default for o in SETTINGS.values()}

"""Turn command-line options into a checked run plan, before any work is done.

Every refusal (unknown names, impossible numbers, a method that cannot run here, a device that
is not here, missing data) happens here, so a bad command writes nothing. :func:`make_plan`
needs neither torch nor data; :func:`resolve_device` and :func:`with_data` are the two checks
that do, made once per run by :func:`clbench.runner.prepare`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from clbench import registry
from clbench.benchmark import StreamProperties
from clbench.config import RunConfig, parse_eval_at, resolve_options
from clbench.errors import ClbenchError, Incompatible, unknown
from clbench.models import check_model
from clbench.scenarios.taxonomy import Scenario, get_scenario


@dataclass
class Plan:
    """A resolved run: its config (without data identity until ``with_data``) and its parts:
    the method class, the stream family (``benchmark``), the scenario and the stream's
    properties."""

    config: RunConfig
    method: type
    benchmark: type
    scenario: Scenario
    props: StreamProperties


def check_compatible(
    method: type, scenario: Scenario, props: StreamProperties, model: str,
    options: dict[str, Any], params: dict[str, Any],
) -> None:
    """The one compatibility check: raise :class:`Incompatible` naming what is supported."""
    name = method.name
    if scenario.name not in method.scenarios:
        raise Incompatible(
            f"method '{name}' does not run in scenario {scenario.name} (it runs in: "
            f"{', '.join(sorted(method.scenarios))})"
        )
    if model not in method.models:
        raise Incompatible(
            f"method '{name}' does not support model '{model}' (supported: "
            f"{', '.join(method.models)})"
        )
    req = method.requires
    if req.input_shapes is not None and props.input_shape not in req.input_shapes:
        raise Incompatible(
            f"method '{name}' needs inputs of shape {' or '.join(map(str, req.input_shapes))}, "
            f"the stream has {props.input_shape}"
        )
    if req.max_classes_per_task is not None and props.classes_per_task > req.max_classes_per_task:
        raise Incompatible(
            f"method '{name}' handles at most {req.max_classes_per_task} classes per task, the "
            f"stream has {props.classes_per_task}"
        )
    if req.max_tasks is not None and props.tasks > req.max_tasks:
        raise Incompatible(f"method '{name}' handles at most {req.max_tasks} tasks")
    if options.get("density") is not None and not method.uses_density:
        raise Incompatible(f"method '{name}' has no density: drop --density/--sparsity")
    method.check(options, params, props)


def make_plan(
    method_name: str, given: dict[str, Any], param_items: list[str], *,
    preset: str | None = None, plugins: list[str] | None = None, tags: list[str] | None = None,
) -> Plan:
    """Resolve and check everything that needs no data."""
    from clbench.data import SOURCES

    plugin = None
    for given_path in plugins or []:
        digest = registry.load_plugin_file(given_path)
        path = Path(given_path).expanduser().resolve()  # one file, one path, whatever the cwd
        plugin = {"path": str(path), "sha256": digest} if plugin is None else {
            "path": f"{plugin['path']},{path}", "sha256": f"{plugin['sha256']},{digest}"}
    method = registry.get_method(method_name)
    options, params = resolve_options(method, given, param_items, preset)
    scenario = get_scenario(options["scenario"])
    benchmark = registry.get_benchmark(options["benchmark"])
    if options["dataset"] not in SOURCES:
        raise unknown("dataset", options["dataset"], SOURCES)
    check_model(options["model"])
    info = SOURCES[options["dataset"]]
    props = benchmark.properties(info, options["tasks"])
    label_view = scenario.label_view(method.infers_task, options["label_view"])
    options["label_view"] = label_view
    check_compatible(method, scenario, props, options["model"], options, params)
    config = RunConfig(
        method=method.name, scenario=scenario.name, benchmark=benchmark.name,
        dataset=info.name, data_identity={}, model=options["model"], params=params,
        density=options["density"], label_view=label_view, tasks=options["tasks"],
        iters=options["iters"], epochs=options["epochs"], batch_size=options["batch_size"],
        eval_batch_size=options["eval_batch_size"], seed=options["seed"],
        data_seed=options["data_seed"], threads=options["threads"], device=options["device"],
        eval_at=parse_eval_at(options["eval_at"], options["tasks"]),
        val_fraction=options["val_fraction"], plugin=plugin, tags=sorted(set(tags or [])),
    )
    return Plan(config, method, benchmark, scenario, props)


def resolve_device(name: str) -> Any:
    """The torch device ``--device`` names, refused in one line when it is not here."""
    import torch

    try:
        device = torch.device(name)
    except RuntimeError:
        raise ClbenchError(
            f"--device {name}: not a torch device (use cpu, cuda or cuda:N)"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ClbenchError(f"--device {name}: CUDA is not available here; use --device cpu")
    return device


def with_data(plan: Plan, data_root: str | None, download: bool) -> tuple[Plan, Any]:
    """Load the data source and put its identity into the config (and so the run id)."""
    from clbench.data import load_source

    source = load_source(plan.config.dataset, data_root, download=download)
    plan.config = replace(plan.config, data_identity=dict(source.identity))
    return plan, source


"""The ``clbench`` command line. Parses options and calls one function per command; torch and
Avalanche are imported only when a run starts."""

from __future__ import annotations

import sys
import traceback
from pathlib import Path
from typing import Annotated, Optional

import typer

from clbench.errors import ClbenchError

EXAMPLES = """\b
Examples:
  clbench run --method supsup --scenario gnu --dataset mnist-5k --tasks 10 --iters 300
  clbench run --method supsup --scenario gnu --tasks 250 --data-root ../shared/data
  clbench run --method avalanche:naive --scenario gg --dataset mnist-5k --tasks 3 --iters 50
  clbench list methods -v
"""

app = typer.Typer(
    help="clbench: continual-learning benchmarks of supermasks in superposition and baselines.",
    epilog=EXAMPLES,
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print one line on stderr and return the exit to raise."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


Opt = typer.Option


# Options shared by ``run`` and ``sweep`` (one definition, one help text).
Scenario = Annotated[Optional[str], Opt(help="gg, gns, gnu or nns [default: gg or the method's "
                                             "preset]")]
Benchmark = Annotated[Optional[str], Opt(help="permuted, rotated or split")]
Dataset = Annotated[Optional[str], Opt(help="data source (clbench list datasets)")]
Model = Annotated[Optional[str], Opt(help="model (clbench list models)")]
Tasks = Annotated[Optional[int], Opt(help="number of tasks")]
Iters = Annotated[Optional[int], Opt(help="training batches per task")]
Epochs = Annotated[Optional[int], Opt(help="training epochs per task (instead of --iters)")]
BatchSize = Annotated[Optional[int], Opt(help="training batch size")]
EvalBatchSize = Annotated[Optional[int], Opt(help="test batch size (task inference decides "
                                                  "per batch)")]
Lr = Annotated[Optional[float], Opt(help="the method's primary learning rate")]
Params = Annotated[Optional[list[str]], Opt("--param", help="method param name=value "
                                                            "(repeatable)")]
Density = Annotated[Optional[float], Opt(help="fraction of weights kept, in (0, 1]")]
Sparsity = Annotated[Optional[float], Opt(help="1 - density")]
LabelView = Annotated[Optional[str], Opt(help="task, domain or class-incremental")]
Seed = Annotated[Optional[int], Opt(help="run seed")]
DataSeed = Annotated[Optional[int], Opt(help="stream seed [default: --seed]")]
Threads = Annotated[Optional[int], Opt(help="torch threads [default: all cores; in a sweep, "
                                            "cores / workers]")]
Device = Annotated[Optional[str], Opt(help="cpu, cuda or cuda:N")]
EvalAt = Annotated[Optional[str], Opt(help="task counts to evaluate after, e.g. 10,50; all; "
                                           "end")]
ValFraction = Annotated[Optional[float], Opt(help="held-out validation part of each task's "
                                                  "training data")]
PresetName = Annotated[Optional[str], Opt("--preset", help="a named protocol of the method, "
                                                           "e.g. paper")]
DataRoot = Annotated[Optional[str], Opt(help="data folder [default: $CLBENCH_DATA or "
                                             "~/.cache/clbench/data]")]
Download = Annotated[bool, Opt(help="download missing datasets with torchvision")]
Results = Annotated[Optional[str], Opt(help="results folder [default: $CLBENCH_RESULTS or "
                                            "results/]")]
Tags = Annotated[Optional[list[str]], Opt("--tag", help="experiment name kept in the record "
                                                        "(repeatable)")]
Plugins = Annotated[Optional[list[str]], Opt("--plugin", help="a Python file adding methods "
                                                              "or benchmarks (repeatable)")]


RUN_OPTIONS = ("scenario", "benchmark", "dataset", "model", "tasks", "iters", "epochs",
               "batch_size", "eval_batch_size", "lr", "density", "sparsity", "label_view",
               "seed", "data_seed", "threads", "device", "eval_at", "val_fraction")


def run_options(values: dict[str, object]) -> dict[str, object]:
    """The run options among a command's arguments (None where not given)."""
    return {k: values[k] for k in RUN_OPTIONS}


@app.command(epilog=EXAMPLES)
def run(
    method: Annotated[str, Opt(help="method to run (clbench list methods)")],
    scenario: Scenario = None, benchmark: Benchmark = None, dataset: Dataset = None,
    model: Model = None, tasks: Tasks = None, iters: Iters = None, epochs: Epochs = None,
    batch_size: BatchSize = None, eval_batch_size: EvalBatchSize = None, lr: Lr = None,
    param: Params = None, density: Density = None, sparsity: Sparsity = None,
    label_view: LabelView = None, seed: Seed = None, data_seed: DataSeed = None,
    threads: Threads = None, device: Device = None, eval_at: EvalAt = None,
    val_fraction: ValFraction = None, preset: PresetName = None, data_root: DataRoot = None,
    download: Download = False, results: Results = None, tag: Tags = None,
    plugin: Plugins = None,
    force: Annotated[bool, Opt(help="run even if a complete record exists (drops its "
                                    "checkpoint)")] = False,
    progress: Annotated[bool, Opt(help="show a progress bar")] = True,
) -> None:
    """Run one method on one stream and write its record (an interrupted run resumes)."""
    from clbench.runner import RunSpec, run_one

    given = run_options(locals())
    spec = RunSpec(method, given, param or [], preset, plugin or [], tag or [], data_root,
                   download, ["clbench", *sys.argv[1:]])
    try:
        code = run_one(spec, results, force=force, progress=progress)
    except ClbenchError as exc:
        raise fail(str(exc)) from None
    raise typer.Exit(code)


SWEEP_EXAMPLES = """\b
Examples:
  clbench sweep --method supsup --method avalanche:ewc --dataset mnist-5k --tasks 6 \\
      --param mask=topk --grid seed=0,1 --grid density=0.05,0.1 --dry-run
  clbench sweep --file sweep.yaml --executor local --workers 2 --tag my-experiment
"""


@app.command(epilog=SWEEP_EXAMPLES)
def sweep(
    method: Annotated[Optional[list[str]], Opt(help="method (repeatable; or --grid "
                                                    "method=a,b)")] = None,
    grid: Annotated[Optional[list[str]], Opt(help="an option or param.NAME with several "
                                                  "values: name=v1,v2 (repeatable)")] = None,
    file: Annotated[Optional[str], Opt(help="YAML sweep file: option names as keys, lists "
                                            "vary (the command line wins)")] = None,
    dry_run: Annotated[bool, Opt(help="print the plan (exists / to run / refused) and stop")]
    = False,
    executor: Annotated[str, Opt(help="local (worker processes) or ray")] = "local",
    workers: Annotated[int, Opt(help="local worker processes")] = 1,
    address: Annotated[Optional[str], Opt(help="Ray cluster to join [default: start a local "
                                               "one]")] = None,
    scenario: Scenario = None, benchmark: Benchmark = None, dataset: Dataset = None,
    model: Model = None, tasks: Tasks = None, iters: Iters = None, epochs: Epochs = None,
    batch_size: BatchSize = None, eval_batch_size: EvalBatchSize = None, lr: Lr = None,
    param: Params = None, density: Density = None, sparsity: Sparsity = None,
    label_view: LabelView = None, seed: Seed = None, data_seed: DataSeed = None,
    threads: Threads = None, device: Device = None, eval_at: EvalAt = None,
    val_fraction: ValFraction = None, preset: PresetName = None, data_root: DataRoot = None,
    download: Download = False, results: Results = None, tag: Tags = None,
    plugin: Plugins = None,
) -> None:
    """Run every combination of a grid that has no complete record yet, then sum up."""
    from clbench.sweep import SweepSpec, merge_file, parse_grid, run_sweep

    given = run_options(locals())
    try:
        axes = parse_grid(grid or [])
        fixed = {k: v for k, v in given.items() if v is not None and k not in axes}
        spec = SweepSpec(method or [], fixed, param or [], axes, preset, plugin or [],
                         sorted(set(tag or [])), data_root, download,
                         ["clbench", *sys.argv[1:]])
        if file is not None:
            from clbench.sweep import read_file

            spec = merge_file(spec, read_file(file))
        code = run_sweep(spec, results, executor=executor, workers=workers, address=address,
                         dry_run=dry_run)
    except ClbenchError as exc:
        raise fail(str(exc)) from None
    raise typer.Exit(code)


KINDS = ("methods", "scenarios", "benchmarks", "datasets", "models")


@app.command("list")
def list_(
    what: Annotated[Optional[str], typer.Argument(help=f"one of {', '.join(KINDS)}")] = None,
    verbose: Annotated[bool, Opt("--verbose", "-v", help="params, presets, bytes rules")]
    = False,
    plugin: Plugins = None,
) -> None:
    """List what clbench knows (without importing torch)."""
    from clbench import listing, registry

    if what is not None and what not in KINDS:
        raise fail(f"cannot list '{what}': choose one of {', '.join(KINDS)}")
    try:
        for path in plugin or []:
            registry.load_plugin_file(path)
    except ClbenchError as exc:
        raise fail(str(exc)) from None
    typer.echo(listing.render([what] if what else list(KINDS), verbose))


@app.command()
def report(
    results: Annotated[Optional[str], Opt(help="results folder [default: $CLBENCH_RESULTS or "
                                               "results/]")] = None,
    out: Annotated[str, Opt(help="report folder (README.md, tables/, plots/)")] = "reports",
    method: Annotated[Optional[list[str]], Opt(help="only this method (repeatable)")] = None,
    scenario: Annotated[Optional[list[str]], Opt(help="only this scenario (repeatable)")] = None,
    benchmark: Annotated[Optional[list[str]], Opt(help="only this benchmark (repeatable)")]
    = None,
    dataset: Annotated[Optional[list[str]], Opt(help="only this dataset (repeatable)")] = None,
    tag: Annotated[Optional[list[str]], Opt(help="only records with this tag (repeatable)")]
    = None,
    reproduce: Annotated[Optional[str], Opt(help="experiments file rendered as "
                                                 "REPRODUCTION.md [default: reproduce.yaml "
                                                 "beside the results folder, if any]")] = None,
) -> None:
    """Tables and plots of the records in a results folder, over seeds (reads records only)."""
    from clbench.report import Filters, write_report

    filters = Filters(*(tuple(v or ()) for v in (method, scenario, benchmark, dataset, tag)))
    try:
        typer.echo(write_report(results, out, filters, reproduce))
    except ClbenchError as exc:
        raise fail(str(exc)) from None


@app.command()
def export(
    what: Annotated[str, Opt(help="tasks (a row per run, variant, evaluation point and task), "
                                  "runs (a row per run and variant) or aggregate (over seeds)")]
    = "runs",
    format: Annotated[str, Opt("--format", help="csv or jsonl")] = "csv",
    out: Annotated[Optional[str], Opt(help="file to write [default: standard output]")] = None,
    results: Annotated[Optional[str], Opt(help="results folder [default: $CLBENCH_RESULTS or "
                                               "results/]")] = None,
    method: Annotated[Optional[list[str]], Opt(help="only this method (repeatable)")] = None,
    scenario: Annotated[Optional[list[str]], Opt(help="only this scenario (repeatable)")] = None,
    benchmark: Annotated[Optional[list[str]], Opt(help="only this benchmark (repeatable)")]
    = None,
    dataset: Annotated[Optional[list[str]], Opt(help="only this dataset (repeatable)")] = None,
    tag: Annotated[Optional[list[str]], Opt(help="only records with this tag (repeatable)")]
    = None,
) -> None:
    """The records as tidy rows for R, spreadsheets and pandas (clbench.results' frames)."""
    import warnings

    from clbench import results as frames
    from clbench.store import write_atomic

    given = {"method": method, "scenario": scenario, "benchmark": benchmark,
             "dataset": dataset, "tag": tag}
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", frames.SkippedRecord)
            text = frames.export(what, format, results, **{k: v for k, v in given.items() if v})
    except ClbenchError as exc:
        raise fail(str(exc)) from None
    for warning in caught:
        typer.echo(str(warning.message), err=True)
    if out is None:
        typer.echo(text, nl=False)
    else:
        write_atomic(Path(out), lambda handle: handle.write(text))
        rows = text.count("\n") - (format == "csv")
        typer.echo(f"export: {rows} rows ({what}) -> {out}", err=True)


def main() -> None:
    """Console entry point: a one-line error instead of a traceback, always."""
    try:
        app()
    except KeyboardInterrupt:
        typer.echo("interrupted: no record was written for the unfinished run; the same "
                   "command resumes it after its last finished task", err=True)
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - last resort: one line plus where the details are
        log = Path.home() / ".cache" / "clbench" / "last-error.txt"
        try:
            log.parent.mkdir(parents=True, exist_ok=True)
            log.write_text(traceback.format_exc())
            where = f" (traceback in {log})"
        except OSError:
            where = ""
        typer.echo(f"error: {type(exc).__name__}: {exc}{where}", err=True)
        sys.exit(1)

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


@app.command(epilog=EXAMPLES)
def run(
    method: Annotated[str, Opt(help="method to run (clbench list methods)")],
    scenario: Annotated[Optional[str], Opt(help="gg, gns, gnu or nns [default: gg or the "
                                                "method's preset]")] = None,
    benchmark: Annotated[Optional[str], Opt(help="permuted, rotated or split")] = None,
    dataset: Annotated[Optional[str], Opt(help="data source (clbench list datasets)")] = None,
    model: Annotated[Optional[str], Opt(help="model (clbench list models)")] = None,
    tasks: Annotated[Optional[int], Opt(help="number of tasks")] = None,
    iters: Annotated[Optional[int], Opt(help="training batches per task")] = None,
    epochs: Annotated[Optional[int], Opt(help="training epochs per task (instead of --iters)")]
    = None,
    batch_size: Annotated[Optional[int], Opt(help="training batch size")] = None,
    eval_batch_size: Annotated[Optional[int], Opt(help="test batch size (task inference "
                                                       "decides per batch)")] = None,
    lr: Annotated[Optional[float], Opt(help="the method's primary learning rate")] = None,
    param: Annotated[Optional[list[str]], Opt(help="method param name=value (repeatable)")]
    = None,
    density: Annotated[Optional[float], Opt(help="fraction of weights kept, in (0, 1]")] = None,
    sparsity: Annotated[Optional[float], Opt(help="1 - density")] = None,
    label_view: Annotated[Optional[str], Opt(help="task, domain or class-incremental")] = None,
    seed: Annotated[Optional[int], Opt(help="run seed")] = None,
    data_seed: Annotated[Optional[int], Opt(help="stream seed [default: --seed]")] = None,
    threads: Annotated[Optional[int], Opt(help="torch threads [default: all cores]")] = None,
    device: Annotated[Optional[str], Opt(help="cpu, cuda or cuda:N")] = None,
    eval_at: Annotated[Optional[str], Opt(help="task counts to evaluate after, e.g. 10,50; "
                                               "all; end")] = None,
    val_fraction: Annotated[Optional[float], Opt(help="held-out validation part of each "
                                                      "task's training data")] = None,
    preset: Annotated[Optional[str], Opt(help="a named protocol of the method, e.g. paper")]
    = None,
    data_root: Annotated[Optional[str], Opt(help="data folder [default: $CLBENCH_DATA or "
                                                 "~/.cache/clbench/data]")] = None,
    download: Annotated[bool, Opt(help="download missing datasets with torchvision")] = False,
    results: Annotated[Optional[str], Opt(help="results folder [default: $CLBENCH_RESULTS or "
                                               "results/]")] = None,
    tag: Annotated[Optional[list[str]], Opt(help="experiment name kept in the record "
                                                 "(repeatable)")] = None,
    plugin: Annotated[Optional[list[str]], Opt(help="a Python file adding methods or "
                                                    "benchmarks (repeatable)")] = None,
    force: Annotated[bool, Opt(help="run even if a complete record exists")] = False,
    progress: Annotated[bool, Opt(help="show a progress bar")] = True,
) -> None:
    """Run one method on one stream and write its record."""
    from clbench.runner import run_one

    given = {
        "scenario": scenario, "benchmark": benchmark, "dataset": dataset, "model": model,
        "tasks": tasks, "iters": iters, "epochs": epochs, "batch_size": batch_size,
        "eval_batch_size": eval_batch_size, "lr": lr, "density": density, "sparsity": sparsity,
        "label_view": label_view, "seed": seed, "data_seed": data_seed, "threads": threads,
        "device": device, "eval_at": eval_at, "val_fraction": val_fraction,
    }
    try:
        code = run_one(
            method, given, param or [], preset=preset, plugins=plugin or [], tags=tag or [],
            data_root=data_root, download=download, results=results, force=force,
            progress=progress, command=["clbench", *sys.argv[1:]],
        )
    except ClbenchError as exc:
        raise fail(str(exc)) from None
    raise typer.Exit(code)


KINDS = ("methods", "scenarios", "benchmarks", "datasets", "models")


@app.command("list")
def list_(
    what: Annotated[Optional[str], typer.Argument(help=f"one of {', '.join(KINDS)}")] = None,
    verbose: Annotated[bool, Opt("--verbose", "-v", help="params, presets, bytes rules")]
    = False,
    plugin: Annotated[Optional[list[str]], Opt(help="a Python file adding methods or "
                                                    "benchmarks (repeatable)")] = None,
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
) -> None:
    """Tables and plots of the records in a results folder, over seeds (reads records only)."""
    from clbench.report import Filters, write_report

    filters = Filters(*(tuple(v or ()) for v in (method, scenario, benchmark, dataset, tag)))
    try:
        typer.echo(write_report(results, out, filters))
    except ClbenchError as exc:
        raise fail(str(exc)) from None


def main() -> None:
    """Console entry point: a one-line error instead of a traceback, always."""
    try:
        app()
    except KeyboardInterrupt:
        typer.echo("interrupted: no record was written for the unfinished run", err=True)
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

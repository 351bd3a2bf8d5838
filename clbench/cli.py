"""The ``clbench`` command line. Parses options and calls one function per command; torch and
Avalanche are imported only when a run starts.

``run`` and ``sweep`` take the options of the options table (:mod:`clbench.options`), their
signatures built from it. This is the one module that prints: runs and sweeps yield lines.
"""

from __future__ import annotations

import inspect
import signal
import sys
import traceback
from collections.abc import Callable, Generator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from clbench.errors import ClbenchError, Interrupted, keep_interrupts
from clbench.options import SETTINGS, Option, for_command, option

if TYPE_CHECKING:
    from clbench.runner import Line

EXAMPLES = """\b
Examples:
  clbench run --method supsup --scenario gnu --dataset mnist-5k --tasks 10 --iters 300
  clbench run --method supsup --scenario gnu --tasks 250 --data-root ../shared/data
  clbench run --method avalanche:naive --scenario gg --dataset mnist-5k --tasks 3 --iters 50
  clbench list methods -v
"""

app = typer.Typer(
    help="clbench: continual-learning runs, sweeps and reports of supermasks in superposition and "
         "baselines.",
    epilog=EXAMPLES,
    add_completion=True,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print one line on stderr and return the exit to raise."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


Opt = typer.Option


def annotation(option: Option) -> Any:
    """The Typer parameter type of an option of the table: its Python type (optional unless it
    is an on/off flag or required), annotated with its help."""
    kind: Any = list[str] if option.type is list else option.type
    if option.type is not bool and not option.required:
        kind = Optional[kind]
    return Annotated[kind, Opt(help=option.help)]


def parameter(option: Option) -> inspect.Parameter:
    """A command parameter for an option of the table. A run setting's value is None when not
    given (the config fills in its default, or a method preset's)."""
    default = (inspect.Parameter.empty if option.required
               else None if option.setting else option.default)
    return inspect.Parameter(option.name, inspect.Parameter.KEYWORD_ONLY,
                             annotation=annotation(option), default=default)


def takes_options(command: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Give a command taking ``**values`` the signature of ``command``'s options in the options
    table, so Typer parses (and ``--help`` lists) each of them as declared there."""
    def decorate(func: Callable[..., None]) -> Callable[..., None]:
        parameters = [parameter(o) for o in for_command(command)]
        func.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
        return func

    return decorate


def settings(values: dict[str, Any]) -> dict[str, Any]:
    """The run settings among a command's values (None where not given)."""
    return {name: values[name] for name in SETTINGS}


def inputs(values: dict[str, Any]) -> dict[str, Any]:
    """What the command gives each of its runs besides method, settings and params (the fields
    of :class:`~clbench.runner.RunInputs`)."""
    return {"preset": values["preset"], "plugins": values["plugin"] or [],
            "tags": sorted(set(values["tag"] or [])), "data_root": values["data_root"],
            "download": values["download"], "command": ["clbench", *sys.argv[1:]],
            "log": values["log"] or [], "log_every": values["log_every"]}


def show(lines: Generator[Line, None, int]) -> int:
    """Print what a run or sweep says, as it says it; return its exit code. An interrupt while
    printing goes to the command, which knows what it leaves."""
    while True:
        try:
            line = next(lines)
        except StopIteration as end:
            return end.value
        try:
            typer.echo(line.text, err=line.err)
        except KeyboardInterrupt as exc:
            lines.throw(exc)


def interrupted(exc: KeyboardInterrupt, complete: int | None = None,
                missing: int | None = None) -> typer.Exit:
    """Say what an interrupt (Ctrl-C, SIGTERM) left and return the exit to raise: 128 + the
    signal, as a shell reports a process it ended (130, 143)."""
    if isinstance(exc, Interrupted) and exc.complete is not None:
        complete, missing = exc.complete, exc.missing
    signum = getattr(exc, "signum", signal.SIGINT)
    if complete is None or missing is None:
        text = "interrupted before any run started; the same command starts them"
    else:
        text = (f"interrupted: {complete} run{'s' * (complete != 1)} complete, {missing} not; "
                f"the same command {'resumes them' if missing else 'skips them'}")
    typer.echo(text, err=True)
    return typer.Exit(128 + signum)


def _terminate(signum: int, frame: Any) -> None:
    """SIGTERM ends a command as Ctrl-C does (saying what it leaves), with exit code 143."""
    raise Interrupted(signum)


@app.command(epilog=EXAMPLES)
@takes_options("run")
def run(**values: Any) -> None:
    """Run one method on one stream and write its record (an interrupted run resumes)."""
    from clbench.runner import RunSpec, run_one

    spec = RunSpec(values["method"], settings(values), values["param"] or [], **inputs(values))
    try:
        code = show(run_one(spec, values["results"], force=values["force"],
                            progress=values["progress"]))
    except ClbenchError as exc:
        raise fail(str(exc)) from None
    except KeyboardInterrupt as exc:  # before Typer turns it into a silent exit
        raise interrupted(exc, 0, 1) from None
    raise typer.Exit(code)


SWEEP_EXAMPLES = """\b
Examples:
  clbench sweep --method supsup --method avalanche:ewc --dataset mnist-5k --tasks 6 \\
      --param mask=topk --grid seed=0,1 --grid density=0.05,0.1 --dry-run
  clbench sweep --file sweep.yaml --executor local --workers 2 --tag my-experiment
"""


@app.command(epilog=SWEEP_EXAMPLES)
@takes_options("sweep")
def sweep(**values: Any) -> None:
    """Run every combination of a grid that has no complete record yet, then sum up."""
    from clbench.sweep import SweepSpec, merge_file, parse_grid, read_file, run_sweep

    try:
        axes = parse_grid(values["grid"] or [])
        fixed = {k: v for k, v in settings(values).items() if v is not None and k not in axes}
        spec = SweepSpec(values["method"] or [], fixed, values["param"] or [], axes,
                         **inputs(values))
        if values["file"] is not None:
            spec = merge_file(spec, read_file(values["file"]))
        code = show(run_sweep(spec, values["results"], executor=values["executor"],
                              workers=values["workers"], address=values["address"],
                              dry_run=values["dry_run"],
                              connect_timeout=values["connect_timeout"],
                              verbose=values["verbose"]))
    except ClbenchError as exc:
        raise fail(str(exc)) from None
    except KeyboardInterrupt as exc:  # before Typer turns it into a silent exit
        raise interrupted(exc) from None
    raise typer.Exit(code)


# ``list`` and ``report`` declare their own options, and borrow these two from the table.
Plugins = annotation(option("plugin", "list"))
Results = annotation(option("results", "report"))
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


# The record filters of ``report`` and ``export`` (one definition, one help text).
OnlyMethod = Annotated[Optional[list[str]], Opt(help="only this method (repeatable)")]
OnlyScenario = Annotated[Optional[list[str]], Opt(help="only this scenario (repeatable)")]
OnlyBenchmark = Annotated[Optional[list[str]], Opt(help="only this benchmark (repeatable)")]
OnlyDataset = Annotated[Optional[list[str]], Opt(help="only this dataset (repeatable)")]
OnlyTag = Annotated[Optional[list[str]], Opt(help="only records with this tag (repeatable)")]


@app.command()
def report(
    results: Results = None,
    out: Annotated[str, Opt(help="report folder (README.md, tables/, plots/)")] = "reports",
    method: OnlyMethod = None, scenario: OnlyScenario = None,
    benchmark: OnlyBenchmark = None, dataset: OnlyDataset = None, tag: OnlyTag = None,
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
    results: Results = None,
    method: OnlyMethod = None, scenario: OnlyScenario = None,
    benchmark: OnlyBenchmark = None, dataset: OnlyDataset = None, tag: OnlyTag = None,
) -> None:
    """The records as tidy rows for R, spreadsheets and pandas (clbench.results' frames)."""
    import warnings

    from clbench import results as frames
    from clbench.atomic import write_atomic

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
    """Console entry point: a one-line error instead of a traceback, always; SIGTERM ends a
    command as Ctrl-C does."""
    signal.signal(signal.SIGTERM, _terminate)
    keep_interrupts()
    try:
        app()
    except KeyboardInterrupt as exc:
        raise SystemExit(interrupted(exc).exit_code) from None
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

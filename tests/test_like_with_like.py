"""Like compared with like (issue 19, item 4): under default options every method sees the same
stream for the same ``--seed``; a run records its stream identity outside the run id; the
report never averages runs of different streams; committed commands still find their records."""

from __future__ import annotations

import copy
import json
import os
import re
import shlex
from dataclasses import replace
from pathlib import Path

import pytest

from clbench import registry
from clbench.benchmark import stream_identity
from clbench.config import RunConfig
from clbench.data import load_source
from clbench.errors import ClbenchError, Incompatible
from clbench.plan import make_plan

ROOT = Path(__file__).resolve().parents[1]
RECORDS = sorted((ROOT / "results").glob("*/record.json"))
#: (benchmark, dataset, tasks): one stream setting of each built-in family.
SETTINGS = (("permuted", "mnist-5k", 3), ("rotated", "mnist-5k", 4), ("split", "mnist-5k", 5))


def identity_of(config: RunConfig) -> str:
    """The stream identity of a planned config: its benchmark's task definitions, built from
    the planned benchmark, dataset, tasks and data seed, without training."""
    source = load_source(config.dataset)
    defs, _ = registry.get_benchmark(config.benchmark).build(source, config.tasks,
                                                             config.data_seed)
    return stream_identity(defs, source)


def plan_default(name: str, given: dict) -> RunConfig | None:
    """``clbench run --method name`` with ``given`` and nothing else, in the method's default
    scenario if it runs there, else in its first; None where the method cannot run."""
    method = registry.get_method(name)
    for scenario in (None, *sorted(method.scenarios)):
        try:
            return make_plan(name, {**given, "scenario": scenario}, []).config
        except Incompatible:
            continue
        except ClbenchError as exc:
            if "scenario" not in str(exc):
                raise
    return None


@pytest.mark.parametrize("benchmark,dataset,tasks", SETTINGS)
@pytest.mark.parametrize("seed", [None, 0, 2])
def test_every_method_sees_one_stream_per_seed(benchmark, dataset, tasks, seed):
    given = {"benchmark": benchmark, "dataset": dataset, "tasks": tasks, "seed": seed}
    identities: dict[str, list[str]] = {}
    data_seeds = set()
    planned = 0
    for name, method in sorted(registry.methods().items()):
        if not isinstance(method, type):
            continue  # a broken plugin: nothing to plan
        config = plan_default(name, given)
        if config is None:
            continue
        planned += 1
        data_seeds.add(config.data_seed)
        identities.setdefault(identity_of(config), []).append(name)
    assert planned >= 10
    assert data_seeds == {1 if seed is None else seed}  # the default seed is the paper's 1
    assert len(identities) == 1, identities


def test_a_preset_seed_is_the_networks_and_a_preset_data_seed_is_refused():
    from clbench.config import resolve_options
    from clbench.method import Preset

    class Fixed:
        name = "fixed"
        presets = (Preset({}, {"seed": 7}),)
        params: dict = {}
        primary_lr = None

    options, _ = resolve_options(Fixed, {}, [])
    assert (options["seed"], options["data_seed"]) == (7, 1)
    options, _ = resolve_options(Fixed, {"seed": 3}, [])
    assert (options["seed"], options["data_seed"]) == (3, 3)
    Fixed.presets = (Preset({}, {"data_seed": 7}),)
    with pytest.raises(ClbenchError, match="may not set data_seed"):
        resolve_options(Fixed, {}, [])


def cli_plan(argv: list[str]) -> list[RunConfig]:
    """The configs a recorded ``clbench run`` or ``clbench sweep`` command line plans here
    (no data loaded: the caller adds the data identity)."""
    import typer

    from clbench.cli import app, inputs, settings
    from clbench.runner import RunSpec
    from clbench.sweep import SweepSpec, combinations, drop_unsupported, parse_grid

    command = typer.main.get_command(app).commands[argv[1]]
    values = command.make_context(argv[1], list(argv[2:])).params
    if argv[1] == "run":
        spec = RunSpec(values["method"], settings(values), values["param"] or [],
                       **inputs(values))
        return [spec.plan().config]
    axes = parse_grid(values["grid"] or [])
    fixed = {k: v for k, v in settings(values).items() if v is not None and k not in axes}
    sweep = SweepSpec(values["method"] or [], fixed, values["param"] or [], axes,
                      **inputs(values))
    out = []
    for name, given, params, _ in combinations(sweep):
        method = registry.get_method(name)
        given, params, _ = drop_unsupported(method, given, params, {})
        try:
            out.append(RunSpec(name, given, params, **sweep.inputs()).plan().config)
        except ClbenchError:
            continue
    return out


def test_every_committed_command_still_plans_its_record(monkeypatch):
    """Each committed record's own command line, planned by today's code (with the record's
    data identity and, where the command gave no --threads, its machine's core count), gives a
    run id that includes the record's: the new default seed moved no committed run."""
    assert len(RECORDS) >= 90
    for path in RECORDS:
        record = json.loads(path.read_text())
        argv, config = record["command"], record["config"]
        if "--threads" not in argv:
            monkeypatch.setattr(os, "cpu_count", lambda n=config["threads"]: n)
        planned = {replace(c, data_identity=config["data_identity"]).run_id
                   for c in cli_plan(argv)}
        monkeypatch.undo()
        assert record["run_id"] in planned, path


def test_the_papers_command_finds_its_committed_record(monkeypatch):
    """``clbench run --method supsup --scenario gnu --tasks 250 --data-root ../shared/data``
    (the README's paper-scale command) plans the run id of a committed record on the 2-core
    machine it ran on (threads default to the cores)."""
    mnist = {json.dumps(json.loads(p.read_text())["config"]["data_identity"], sort_keys=True)
             for p in RECORDS if json.loads(p.read_text())["config"]["dataset"] == "mnist"}
    assert len(mnist) == 1
    argv = ["clbench", "run", "--method", "supsup", "--scenario", "gnu", "--tasks", "250",
            "--data-root", "../shared/data"]
    assert " ".join(argv) in (ROOT / "README.md").read_text()
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    config = replace(cli_plan(argv)[0], data_identity=json.loads(mnist.pop()))
    assert (config.seed, config.data_seed) == (1, 1)
    committed = {json.loads(p.read_text())["run_id"] for p in RECORDS}
    assert config.run_id in committed


def readme_setup_commands() -> list[list[str]]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"## Set-up.*?```bash\n(.*?)```", text, re.S).group(1)
    commands = [shlex.split(c.strip()) for c in block.replace("\\\n", " ").split("&&")]
    return [["clbench", *c[1:]] for c in commands if c and c[0].endswith("clbench")
            and c[1] == "run"]


def test_the_readmes_main_job_compares_like_with_like():
    commands = readme_setup_commands()
    assert [c[c.index("--method") + 1] for c in commands] == ["supsup", "avalanche:naive"]
    configs = [cli_plan(c)[0] for c in commands]
    assert {(c.seed, c.data_seed) for c in configs} == {(1, 1)}
    assert len({identity_of(c) for c in configs}) == 1


def test_stream_identity_tells_streams_apart():
    source = load_source("mnist-5k")
    benchmark = registry.get_benchmark("permuted")
    same = [stream_identity(benchmark.build(source, 3, seed)[0], source) for seed in (1, 1, 2)]
    assert same[0] == same[1] != same[2]
    rotated = registry.get_benchmark("rotated")
    assert stream_identity(rotated.build(source, 3, 1)[0], source) != same[0]
    split = registry.get_benchmark("split")
    assert (stream_identity(split.build(source, 5, 1)[0], source)
            == stream_identity(split.build(source, 5, 2)[0], source))  # MNIST: fixed order


def test_a_run_records_its_stream_identity_outside_the_run_id(tmp_path):
    from typer.testing import CliRunner

    from clbench.cli import app

    args = ["run", "--method", "supsup", "--scenario", "gg", "--dataset", "mnist-5k",
            "--tasks", "2", "--iters", "2", "--threads", "1", "--no-progress",
            "--results", str(tmp_path)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    record = json.loads(next(tmp_path.glob("*/record.json")).read_text())
    config = RunConfig.from_dict(record["config"])
    assert record["stream"]["identity"] == identity_of(config)
    assert config.run_id == record["run_id"]
    assert record["stream"]["identity"] not in config.canonical()
    assert record["schema_version"] == 1


def test_the_report_keeps_runs_of_different_streams_apart(tmp_path):
    from clbench.report.runs import collect
    from clbench.report.tables import groups_table
    from clbench.results import runs

    base = json.loads(next(p for p in RECORDS if "psp-gg-permuted-mnist-s" in str(p)
                           ).read_text())

    def write(name: str, seed: int, identity: str | None) -> None:
        record = copy.deepcopy(base)
        record["config"].update(seed=seed, data_seed=seed)
        record["run_id"] = RunConfig.from_dict(record["config"]).run_id + name[-1]
        if identity is None:  # a record written before streams had identities
            record["stream"].pop("identity", None)
        else:
            record["stream"]["identity"] = identity
        folder = tmp_path / name
        folder.mkdir()
        (folder / "record.json").write_text(json.dumps(record))

    write("old-a", 1, None)
    write("old-b", 2, None)
    write("new-c", 3, "c" * 16)
    collection = collect(tmp_path)
    assert [len(g.runs) for g in collection.groups] == [3]  # agreeing streams: one mean
    assert groups_table(collection.groups).note.count("stream") == 0

    write("new-d", 1, "d" * 16)
    write("new-e", 1, "e" * 16)  # seed 1 seen as two streams: never in one mean
    groups = collect(tmp_path).groups
    by_stream = {g.stream: sorted(r.path.split("/")[0] for r in g.runs) for g in groups}
    assert by_stream == {"": ["new-c", "old-b"], "dddddddd": ["new-d"],
                         "eeeeeeee": ["new-e"], "unrecorded": ["old-a"]}
    assert all(("stream " + g.stream) in g.name for g in groups if g.stream)
    assert "never averaged together" in groups_table(groups).note
    frame = runs(tmp_path)
    assert frame.groupby("group")["record"].nunique().sort_values().tolist() == [1, 1, 1, 2]

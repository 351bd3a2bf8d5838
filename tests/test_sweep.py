"""Sweeps (issue #6): grids, dropping and deduplication, refusals in the plan, resume after
``kill -9``, failures that stop nothing else, and Ray giving the local executor's numbers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from clbench.errors import ClbenchError
from clbench.store import Store
from clbench.sweep import SweepSpec, merge_file, parse_grid, plan_sweep, read_file

NEUTRAL = tempfile.gettempdir()
SMALL = ["--dataset", "mnist-5k", "--tasks", "2", "--iters", "10"]
GRID = ["--method", "supsup", "--method", "avalanche:naive", "--param", "mask=topk",
        "--grid", "seed=0,1", "--grid", "density=0.05,0.1", *SMALL]


def clbench(*args, results, wait=True, env=None):
    command = [sys.executable, "-m", "clbench", *args, "--results", str(results)]
    env = {**os.environ, **(env or {})}
    if not wait:
        return subprocess.Popen(command, cwd=NEUTRAL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True,
                                env=env)
    return subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=NEUTRAL,
                          env=env)


def spec(**kw):
    base = {"methods": ["supsup", "avalanche:naive"], "fixed": {"dataset": "mnist-5k",
            "tasks": 2, "iters": 10, "threads": 1}, "params": ["mask=topk"],
            "axes": {"seed": [0, 1], "density": [0.05, 0.1]}}
    base.update(kw)
    return SweepSpec(**base)


def test_grid_values_are_typed_and_bad_ones_refused():
    axes = parse_grid(["seed=0,1,2", "density=0.05,0.1", "param.output_size=25,100",
                       "eval-at=end"])
    assert axes == {"seed": [0, 1, 2], "density": [0.05, 0.1],
                    "param.output_size": ["25", "100"], "eval_at": ["end"]}
    for bad, words in (["seed=a"], "not an integer"), (["colour=red"], "unknown option"), \
                       (["seed"], "name=value1,value2"), (["seed=1", "seed=2"], "twice"):
        with pytest.raises(ClbenchError, match=words):
            parse_grid(bad)
    assert parse_grid(["method=psp,supsup"]) == {"method": ["psp", "supsup"]}  # as --help says


def test_options_a_method_does_not_take_are_dropped_and_runs_deduplicated(results):
    plan = plan_sweep(spec(), Store(results))
    supsup = [p for p in plan if p.spec.method == "supsup"]
    naive = [p for p in plan if p.spec.method == "avalanche:naive"]
    assert len(supsup) == 4 and len({p.run_id for p in supsup}) == 4
    assert len(naive) == 2  # density dropped: 2 seeds x 2 densities become 2 runs
    assert all(p.spec.given["density"] is None and p.spec.params == [] for p in naive)
    assert {p.label for p in naive} == {"avalanche:naive seed=0", "avalanche:naive seed=1"}
    assert all(p.status == "run" for p in plan)


def test_refused_combinations_are_listed_with_the_reason(results):
    plan = plan_sweep(spec(methods=["psp"], axes={"scenario": ["gg", "gnu"]}, params=[]),
                      Store(results))
    assert [p.status for p in plan] == ["run", "refused"]
    assert "does not run in scenario gnu" in plan[1].reason


def test_sweep_file_uses_the_same_names_and_the_command_line_wins(tmp_path):
    file = tmp_path / "sweep.yaml"
    file.write_text("method: [supsup, psp]\ndataset: mnist-5k\ntasks: 3\nseed: [0, 1]\n"
                    "param.output_size: [20, 40]\nparam.mask: threshold\ntag: exp\n")
    merged = merge_file(spec(methods=[], fixed={"tasks": 2}, params=[], axes={}),
                        read_file(file))
    assert merged.methods == ["supsup", "psp"] and merged.tags == ["exp"]
    assert merged.fixed == {"tasks": 2, "dataset": "mnist-5k"}
    assert merged.axes == {"seed": [0, 1], "param.output_size": ["20", "40"]}
    assert merged.params == ["mask=threshold"]
    file.write_text("- not a mapping\n")
    with pytest.raises(ClbenchError, match="mapping"):
        read_file(file)


def test_dry_run_prints_the_plan_and_writes_nothing(results):
    out = clbench("sweep", *GRID, "--dry-run", results=results)
    assert out.returncode == 0, out.stderr
    assert "6 runs: 0 exist, 6 to run; 0 refused" in out.stdout
    assert not results.exists() or not list(results.iterdir())


def records(root: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(root.glob("*/record.json"))]


def test_killed_sweep_resumes_with_only_the_missing_runs(results):
    proc = clbench("sweep", *GRID, "--workers", "2", "--tag", "s1", results=results, wait=False)
    deadline = time.time() + 300
    while time.time() < deadline and len(list(results.glob("*/record.json"))) < 2:
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)  # the driver only: its workers must notice and exit
    proc.wait()
    for _ in range(100):
        try:
            os.killpg(proc.pid, 0)  # any worker left in the sweep's process group?
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail("worker processes outlived their killed driver")
    first = {r["run_id"] for r in records(results)}
    assert 2 <= len(first) < 6 and all(r["status"] == "complete" for r in records(results))
    again = clbench("sweep", *GRID, "--workers", "2", "--tag", "s1", results=results)
    assert again.returncode == 0, again.stderr
    assert f"{len(first)} exist, {6 - len(first)} to run" in again.stdout
    assert again.stdout.count("done    ") == 6 - len(first)
    final = records(results)
    assert len(final) == 6 and all(r["status"] == "complete" for r in final)
    assert all(r["config"]["tags"] == ["s1"] and r["config"]["threads"] == 1 for r in final)
    assert not list(results.glob("*/checkpoint.pt"))
    summary = again.stdout.split("0 refused", 1)[1]
    assert "supsup" in summary and "avalanche:naive" in summary and "± " in summary


def test_a_sweeps_runs_show_their_progress_as_lines_with_their_run_id(results):
    out = clbench("sweep", "--method", "psp", "--dataset", "mnist-5k", "--tasks", "3", "--iters",
                  "100", "--threads", "1", results=results,
                  env={"CLBENCH_PROGRESS_EVERY": "0.05"})
    assert out.returncode == 0, out.stderr
    (record,) = records(results)
    lines = [line for line in out.stderr.splitlines() if record["run_id"] in line]
    assert lines and all(line.startswith(f"psp gg {record['run_id']} [") for line in lines)
    assert any("training task" in line and "steps/s" in line for line in lines)
    assert "\r" not in out.stderr and "done, 3 tasks" not in out.stderr


FAILING = """\
from clbench.method import Method
from clbench.registry import register_method


@register_method
class Crashes(Method):
    name = "crashes"
    description = "fails while training"

    def train_experience(self, experience):
        raise ValueError("deliberate failure")
"""


def test_a_failing_run_is_recorded_and_stops_nothing_else(results, tmp_path):
    plugin = tmp_path / "crashes.py"
    plugin.write_text(FAILING)
    out = clbench("sweep", "--method", "crashes", "--method", "psp", "--plugin", str(plugin),
                  *SMALL, "--threads", "1", results=results)
    assert out.returncode == 1 and "1 of 2 runs failed" in out.stderr
    assert "Traceback" not in out.stderr
    by_method = {r["config"]["method"]: r for r in records(results)}
    assert by_method["crashes"]["status"] == "failed"
    assert "deliberate failure" in by_method["crashes"]["error"]
    assert by_method["psp"]["status"] == "complete"


def test_ray_executor_gives_the_local_executors_numbers(tmp_path):
    pytest.importorskip("ray")
    local, remote = tmp_path / "local", tmp_path / "ray"
    grid = ["--method", "supsup", "--param", "mask=topk", "--grid", "seed=0,1",
            "--density", "0.1", *SMALL, "--threads", "1"]
    a = clbench("sweep", *grid, results=local)
    env_note = "RAY_USAGE_STATS_ENABLED"
    assert a.returncode == 0, a.stderr
    b = subprocess.run([sys.executable, "-m", "clbench", "sweep", *grid, "--executor", "ray",
                        "--results", str(remote)], capture_output=True, text=True, timeout=600,
                       cwd=NEUTRAL, env={**os.environ, env_note: "0"})
    assert b.returncode == 0, b.stderr
    ours = {r["run_id"]: r for r in records(local)}
    theirs = {r["run_id"]: r for r in records(remote)}
    assert ours.keys() == theirs.keys() and len(ours) == 2
    for run_id, record in ours.items():
        assert theirs[run_id]["checkpoints"] == record["checkpoints"]
        assert theirs[run_id]["diagonal"] == record["diagonal"]


def test_store_checkpoint_lives_beside_the_record(results):
    plan = plan_sweep(spec(methods=["psp"], axes={}, params=[]), Store(results))
    path = Store(results).checkpoint_path(plan[0].config)
    assert path.name == "checkpoint.pt" and path.parent.name.endswith(plan[0].run_id)


def test_local_workers_take_every_spec_survive_a_killed_one_and_leave_no_thread(tmp_path):
    """Six specs on two workers: each is taken once and its failure comes back, the one
    whose worker is killed (a plugin that kills its process) as that death, and a new worker
    takes the rest. No queue feeder thread outlives the sweep: one ending while the
    interpreter shuts down (after Ctrl-C) unlinks semaphores behind the resource tracker's
    back, which then warns."""
    import threading

    from clbench.executors import run_local
    from clbench.runner import RunSpec

    killer = tmp_path / "killer.py"
    killer.write_text("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n")
    specs = [RunSpec(method=f"no-such-method-{i}", given={}) for i in range(6)]
    specs[1] = RunSpec(method="supsup", given={}, plugins=[str(killer)])
    ended = {index: (record, error) for index, record, _notes, error
             in run_local(specs, None, workers=2)}
    assert sorted(ended) == list(range(6))
    assert ended.pop(1) == (None, "the worker process died (exit code -9; out of memory?)")
    for index, (record, error) in ended.items():
        assert record is None and f"no-such-method-{index}" in error
    assert not [t for t in threading.enumerate() if t.name == "QueueFeederThread"]


def test_the_sweeps_eta_costs_each_run_left_as_its_group_took():
    """Two workers, runs of groups a, a, b, b, c. c's run fails first: no ETA while no run
    completed, and a failure says nothing about pace. a's first run took 100 s by its record
    (a resumed run's record counts more than this process saw), so the other a costs 100 s
    and both b, none finished, the mean 100 s: 150 s on two workers. After b's run of 400 s
    the b left costs 400 s."""
    from clbench.sweep import Tally

    def record(seconds):
        return {"status": "complete", "final": {"default": {"accuracy": 0.9}},
                "timing": {"total_s": seconds}}

    tally = Tally(["a", "a", "b", "b", "c"], parallel=2)
    failed = tally.line({"status": "failed", "error": "RuntimeError: boom"}, "c seed=1", "c")
    assert failed.startswith("[1/5] failed  c seed=1: RuntimeError: boom") and "ETA" not in failed
    assert tally.eta() is None
    line = tally.line(record(100.0), "a seed=1", "a")
    assert line.startswith("[2/5] done    a seed=1: accuracy 90.00% (100 s) · ")
    assert tally.eta() == (100 + 100 + 100) / 2 and line.endswith("ETA 02:30")
    tally.line(record(400.0), "b seed=1", "b")
    assert tally.eta() == (100 + 400) / 2  # a: 100, b: 400 (c failed; its run is not left)
    tally.line(record(120.0), "a seed=2", "a")
    assert tally.eta() == 400 / 2
    assert "ETA" not in tally.line(record(380.0), "b seed=2", "b")  # nothing left


def test_the_runs_that_existed_give_the_sweeps_eta_their_seconds(results, monkeypatch):
    """A resumed sweep: the records already there count as finished runs in its ETA (a
    group's own, else the mean), from its first line on; they get the sweep's tags."""
    from clbench import sweep
    from clbench.record import SCHEMA_VERSION
    from clbench.sweep import Tally

    tally = Tally(["a", "b"], parallel=1, finished={"a": [300.0], "c": [100.0]})
    assert tally.eta() == 300 + 200  # a: its existing run; b: the mean of 300 and 100
    plan = [p for p in plan_sweep(spec(), Store(results)) if p.spec.method == "supsup"]
    store = Store(results)
    for p, seconds in zip(plan[:2], (50.0, 70.0)):
        store.write({"schema_version": SCHEMA_VERSION, "run_id": p.run_id,
                     "config": p.config.to_dict(), "status": "complete",
                     "timing": {"total_s": seconds}})
    seen = []

    def todo(runs, *args):
        seen.append(([p.run_id for p in runs], args[-1]))
        yield from ()

    monkeypatch.setattr(sweep, "_run_todo", todo)
    monkeypatch.setattr(sweep, "results_table", lambda store, run_ids: "")
    lines = sweep.run_sweep(spec(methods=["supsup"], tags=["again"]), str(results),
                            executor="local", workers=1, address=None, dry_run=False)
    for _ in lines:
        pass
    ((ran, finished),) = seen
    groups = {p.run_id: p.config.group_key for p in plan}
    assert sorted(ran) == sorted(p.run_id for p in plan[2:])
    assert sorted(t for times in finished.values() for t in times) == [50.0, 70.0]
    assert all(groups[p.run_id] in finished for p in plan[:2])
    assert [r["config"]["tags"] for r in records(results)] == [["again"], ["again"]]

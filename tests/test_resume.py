"""Checkpoints (the resume file) and resume (issue #6): a run interrupted after task 3 of 6
resumes at task 4 and ends with the same matrices as an uninterrupted run; bad checkpoints are
refused in one line."""

from __future__ import annotations

import pytest
import torch

from clbench import checkpoint as checkpoint_io
from clbench import engine
from clbench.errors import ClbenchError
from clbench.plan import make_plan, with_data
from clbench.record import RunState

TINY = {"dataset": "mnist-5k", "tasks": 6, "iters": 15, "threads": 1, "seed": 2}

CASES = [
    ("supsup", {"scenario": "gnu"}, ["output_size=20", "objective=H,G"]),
    ("supsup", {"scenario": "gg", "density": 0.1}, ["mask=topk", "init=transfer"]),
    ("supsup", {"scenario": "nns"}, ["output_size=20", "check_every=5"]),
    ("batche", {"scenario": "gg"}, []),
    ("batche", {"scenario": "gnu"}, ["output_size=20"]),
    ("psp", {"scenario": "gg"}, []),
    ("upper-bound", {"scenario": "gg"}, []),
    ("lower-bound", {"scenario": "gg"}, []),
]


def plan_for(method, options, params):
    given = {k: None for k in ("benchmark", "model", "epochs", "sparsity", "label_view",
                               "eval_at", "density")}
    given.update(TINY, **options)
    return with_data(make_plan(method, given, params), None, False)


def run(method, options, params, checkpoint=None, notes=None):
    plan, source = plan_for(method, options, params)
    say = notes.append if notes is not None else None
    return engine.execute(plan, source, ["test"], show_progress=False, checkpoint=checkpoint,
                          say=say)


def interrupt_after(monkeypatch, learned):
    """Make the run stop (as Ctrl-C would) while evaluating task ``learned`` + 1."""
    original = engine.Evaluator.after_task

    def after_task(self, task):
        if task == learned:
            raise KeyboardInterrupt
        return original(self, task)

    monkeypatch.setattr(engine.Evaluator, "after_task", after_task)


@pytest.mark.parametrize(("method", "options", "params"), CASES,
                         ids=[f"{m}-{o['scenario']}" for m, o, _ in CASES])
def test_interrupted_after_task_3_resumes_at_task_4_with_identical_results(
        tmp_path, monkeypatch, method, options, params):
    whole = run(method, options, params)
    path = tmp_path / "checkpoint.pt"
    with monkeypatch.context() as patch:
        interrupt_after(patch, 3)
        with pytest.raises(KeyboardInterrupt):
            run(method, options, params, checkpoint=path)
    saved = torch.load(path, weights_only=True)
    assert saved["learned"] == 3 and len(saved["diagonal"]) == 3
    assert 10 < saved["peak_memory_mb"] < whole["peak_memory_mb"] * 2
    saved["peak_memory_mb"] = 123456.0  # as if the interrupted process had used more
    torch.save(saved, path)
    notes = []
    resumed = run(method, options, params, checkpoint=path, notes=notes)
    assert notes == [f"resuming after task 3 of 6 from {path}"]
    assert resumed["resumes"][0]["at_task"] == 4
    assert resumed["peak_memory_mb"] == 123456.0  # the run's peak, not the last process's
    timing = resumed["timing"]
    assert len(timing["train_s_per_task"]) == len(timing["eval_s_per_task"]) == 6
    assert sum(timing["eval_s_per_task"]) == pytest.approx(timing["eval_s"], abs=0.01)
    for key in ("diagonal", "checkpoints", "final", "extras"):
        assert resumed[key] == whole[key], key


def test_a_checkpoint_without_a_peak_memory_gives_this_processes():
    from clbench import provenance

    old = RunState.from_saved({k: v for k, v in RunState("now", {}).saved().items()
                               if k != RunState.PEAK})
    assert old.peak_memory_mb == 0.0
    assert old.peak_memory() == pytest.approx(provenance.peak_memory_mb(), rel=0.01)


def test_a_runs_peak_memory_is_its_own_not_an_earlier_runs_in_the_same_process():
    import os

    if not os.access("/proc/self/clear_refs", os.W_OK):
        pytest.skip("the peak resets through /proc/self/clear_refs (Linux)")
    import torch

    spike = torch.ones(1500 * 2**20 // 4)  # 1.5 GB touched, as an earlier run of a worker might
    del spike
    record = run("psp", {"scenario": "gg", "tasks": 2}, [])
    rss = int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    assert rss - 10 < record["peak_memory_mb"] < rss + 300  # the run's own, not the spike


def test_a_checkpoint_of_another_config_is_refused(tmp_path):
    plan, _ = plan_for("psp", {"scenario": "gg"}, [])
    other, _ = plan_for("psp", {"scenario": "gg", "seed": 3}, [])
    path = tmp_path / "checkpoint.pt"
    checkpoint_io.save(path, plan.config.to_dict(), RunState("now", {}, learned=1), {"w": 1})
    state, method_state = checkpoint_io.load(path, plan.config.to_dict())
    assert state.learned == 1 and method_state == {"w": 1}
    with pytest.raises(ClbenchError, match=r"another config \(it differs in [a-z_, ]*\bseed\b"):
        checkpoint_io.load(path, other.config.to_dict())


def test_a_corrupt_checkpoint_is_refused_in_one_line(tmp_path):
    plan, _ = plan_for("psp", {"scenario": "gg"}, [])
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(b"\x80\x02 not a checkpoint")
    with pytest.raises(ClbenchError, match="unreadable.*delete it") as info:
        checkpoint_io.load(path, plan.config.to_dict())
    assert "\n" not in str(info.value)


def test_a_method_without_checkpoints_says_it_restarts(tmp_path):
    notes = []
    path = tmp_path / "checkpoint.pt"
    record = run("avalanche:naive", {"scenario": "gg", "tasks": 2}, [], checkpoint=path,
                 notes=notes)
    assert record["status"] == "complete" and not path.exists()
    assert notes == ["note: avalanche:naive cannot checkpoint: an interrupted run restarts "
                     "from its first task"]

"""Every registered method, in every scenario it declares, passes the same checks the day it is
registered (timm's tests over ``list_models()``): it plans with default options on a tiny stream,
learns two tasks into a complete record with sane numbers, reports bytes only under the rules it
declares, and, where it checkpoints, resumes after an interruption with the numbers of an
uninterrupted run (its state dict survives a save and load).

Built-in methods and installed plugin packages are found through the registry; plugin files
join with ``CLBENCH_TEST_PLUGINS=path/a.py:path/b.py pytest tests/test_registry_methods.py``.
"""

from __future__ import annotations

import os

import pytest

from clbench import engine, registry
from clbench.errors import Incompatible
from clbench.plan import make_plan, with_data

TINY = {"dataset": "mnist-5k", "tasks": 2, "iters": 4, "threads": 1, "seed": 0,
        "eval_batch_size": 250}


def _load_test_plugins() -> None:
    for path in filter(None, os.environ.get("CLBENCH_TEST_PLUGINS", "").split(os.pathsep)):
        registry.load_plugin_file(path)


def cases() -> list[tuple[str, str]]:
    """(method, scenario) for every working registered method and scenario it declares."""
    _load_test_plugins()
    return [(name, scenario) for name, method in sorted(registry.methods().items())
            if isinstance(method, type) for scenario in sorted(method.scenarios)]


def tiny_plan(name: str, scenario: str):
    """The method's plan with default options on mnist-5k, else with the first model it
    declares that accepts mnist-5k; None when none does (a convolutional-only method)."""
    method = registry.get_method(name)
    for model in (None, *method.models):
        try:
            plan = make_plan(name, {**TINY, "scenario": scenario, "model": model}, [])
        except Incompatible:
            continue
        return with_data(plan, None, False)
    return None


def run(plan_and_source, checkpoint=None, notes=None):
    plan, source = plan_and_source
    say = notes.append if notes is not None else (lambda _line: None)
    return engine.execute(plan, source, ["test"], show_progress=False, checkpoint=checkpoint,
                          say=say)


@pytest.mark.parametrize(("name", "scenario"), cases(), ids=[f"{m}-{s}" for m, s in cases()])
def test_registered_method_learns_two_tasks_and_resumes(tmp_path, monkeypatch, name, scenario):
    planned = tiny_plan(name, scenario)
    if planned is None:
        pytest.skip(f"{name} runs on no model that takes mnist-5k's 28x28 grey images")
    method = planned[0].method
    record = run(planned)
    assert record["status"] == "complete"
    assert len(record["diagonal"]) == 2
    assert [c["after_tasks"] for c in record["checkpoints"]] == [1, 2]
    infers = planned[0].scenario.infers_task
    assert record["variants"] == (method.variants(planned[0].config.params) if infers
                                  else ["default"])
    for values in record["final"].values():
        assert 0.0 <= values["accuracy"] <= 1.0
        assert 0.0 <= values["oracle_accuracy"] <= 1.0
    assert set(record["checkpoints"][-1]["bytes"]) <= set(method.bytes_rules)

    # Interrupted while learning task 2, then resumed: the numbers of the uninterrupted run.
    calls = {"n": 0}
    original = method.train_experience

    def stop_at_task_2(self, experience):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return original(self, experience)

    path = tmp_path / "checkpoint.pt"
    with monkeypatch.context() as patch:
        patch.setattr(method, "train_experience", stop_at_task_2)
        with pytest.raises(KeyboardInterrupt):
            run(tiny_plan(name, scenario), checkpoint=path)
    notes: list[str] = []
    resumed = run(tiny_plan(name, scenario), checkpoint=path, notes=notes)
    if not path.exists() and not any(n.startswith("resuming") for n in notes):
        assert any("cannot checkpoint" in n for n in notes), notes  # restarts, and says so
    else:
        assert any(n.startswith("resuming after task 1 of 2") for n in notes), notes
        assert resumed["resumes"][0]["at_task"] == 2
    for key in ("diagonal", "checkpoints", "final"):
        assert resumed[key] == record[key], key

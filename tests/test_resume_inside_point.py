"""Resume inside an evaluation point (issue #17, item 3): a run stopped while evaluating the
point after 4 of 6 tasks, after some of its tasks were evaluated and saved, resumes inside that
point without predicting those tasks again and ends with the uninterrupted run's numbers."""

from __future__ import annotations

import pytest
import torch

from clbench import engine
from clbench.context import RunContext
from clbench.plan import make_plan, with_data
from clbench.progress import Progress

CASES = [
    ("supsup", {"scenario": "gnu"}, ["output_size=20", "objective=H,G"]),
    ("batche", {"scenario": "gnu"}, ["output_size=20"]),
]


def plan_for(method, options, params):
    given = {k: None for k in ("benchmark", "model", "epochs", "sparsity", "label_view",
                               "eval_at", "density")}
    given.update({"dataset": "mnist-5k", "tasks": 6, "iters": 15, "threads": 1, "seed": 2},
                 **options)
    return with_data(make_plan(method, given, params), None, False)


def run(plan, source, checkpoint=None, notes=None):
    return engine.execute(plan, source, ["test"], show_progress=False, checkpoint=checkpoint,
                          say=notes.append if notes is not None else None)


def record_requests(monkeypatch, plan):
    """Log (point, task, given) of every request the method is asked; returns the log."""
    made: dict[int, tuple[int, int, object]] = {}
    log: list[tuple[int, int, bool]] = []
    test_batches, predict = RunContext.test_batches, plan.method.predict

    def batches(self, index, point):
        out = test_batches(self, index, point)
        made[id(out)] = (point, index, out)  # holding ``out`` keeps its id unique
        return out

    def asked(self, requests):
        for r in requests:
            point, index, _ = made[id(r.batches)]
            log.append((point, index, r.task is not None))
        return predict(self, requests)

    monkeypatch.setattr(RunContext, "test_batches", batches)
    monkeypatch.setattr(plan.method, "predict", asked)
    return log


@pytest.mark.parametrize(("method", "options", "params"), CASES,
                         ids=[f"{m}-{o['scenario']}" for m, o, _ in CASES])
def test_stopped_inside_an_evaluation_point_resumes_there_with_identical_results(
        tmp_path, monkeypatch, method, options, params):
    plan, source = plan_for(method, options, params)
    whole = run(plan, source)
    path = tmp_path / "checkpoint.pt"
    with monkeypatch.context() as patch:
        patch.setattr(engine.Evaluator, "slice_batches", 1)  # one task per slice
        patch.setattr(engine.Evaluator, "save_every_s", 0.0)  # saved after every slice
        log = record_requests(patch, plan)
        predict = plan.method.predict

        def stop_at_third_inferred_task_of_point_4(self, requests):
            if sum(1 for p, _, given in log if p == 4 and not given) == 2 and all(
                    r.task is None for r in requests):
                raise KeyboardInterrupt
            return predict(self, requests)

        patch.setattr(plan.method, "predict", stop_at_third_inferred_task_of_point_4)
        with pytest.raises(KeyboardInterrupt):
            run(plan, source, checkpoint=path)
    saved = torch.load(path, weights_only=True)
    assert saved["learned"] == 4 and len(saved["checkpoints"]) == 3
    partial = saved["partial_point"]
    assert partial["after_tasks"] == 4 and len(partial["oracle"]) == 3
    assert all(len(a) == 2 for a in partial["accuracy"].values())
    *complete, part = saved["timing"]["eval_s_per_task"]  # the point's seconds so far, too
    assert len(complete) == 3 and part > 0
    notes: list[str] = []
    told: list[tuple[str, int, int, bool]] = []
    with monkeypatch.context() as patch:
        log = record_requests(patch, plan)
        patch.setattr(engine.Evaluator, "slice_batches", 1)
        patch.setattr(Progress, "scoring", lambda self, *where: told.append(where))
        resumed = run(plan, source, checkpoint=path, notes=notes)
    # the progress line hears where the point stands, from where it resumed
    assert told[:4] == [("task given", 4, 4, False), ("task inferred", 2, 4, True),
                        ("task inferred", 3, 4, True), ("task inferred", 4, 4, True)]
    assert told[4:10] == [("task given", 1, 5, False), ("task given", 2, 5, False),
                          ("task given", 3, 5, False), ("task given", 4, 5, False),
                          ("task given", 5, 5, False), ("task inferred", 0, 5, True)]
    assert notes == [f"resuming after task 4 of 6 from {path}, inside the evaluation after 4 "
                     "tasks: 4 of 4 tasks evaluated with the task given, 2 of 4 with it "
                     "inferred"]
    assert [r for r in log if r[0] == 4] == [(4, 2, False), (4, 3, False)]
    assert resumed["resumes"][0]["at_task"] == 5
    for key in ("diagonal", "checkpoints", "final", "extras"):
        assert resumed[key] == whole[key], key
    timing = resumed["timing"]
    assert timing["eval_s_per_task"][:3] == complete and timing["eval_s_per_task"][3] > part
    assert sum(timing["eval_s_per_task"]) == pytest.approx(timing["eval_s"], abs=0.01)


def test_a_fast_evaluation_point_is_not_saved_midway(tmp_path, monkeypatch):
    plan, source = plan_for(*CASES[0])
    monkeypatch.setattr(engine.Evaluator, "slice_batches", 1)
    saved: list[int] = []
    save = engine.checkpoint_io.save
    monkeypatch.setattr(engine.checkpoint_io, "save",
                        lambda path, config, state, method_state: (
                            saved.append(state.partial is not None),
                            save(path, config, state, method_state)))
    run(plan, source, checkpoint=tmp_path / "checkpoint.pt")
    assert saved == [False] * 5  # after each task but the last, never inside a point

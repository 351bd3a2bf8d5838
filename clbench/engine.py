"""One run: build the stream and the method, train task by task, evaluate at evaluation
points, and return the record (FACIL's loop: the task-given oracle matrix and the scenario's
matrix from the same run).

The run arrives planned, its data loaded and its device resolved (:func:`clbench.runner.
prepare`); :func:`execute` is the one per-task loop, :class:`Evaluator` the one evaluator, and
:func:`clbench.record.build_record` writes the record out. With a checkpoint path the run saves
its :class:`~clbench.record.RunState` after every task and resumes from it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clbench import checkpoint as checkpoint_io
from clbench import metrics, provenance
from clbench.avalanche import avalanche_streams
from clbench.benchmark import stream_identity
from clbench.context import RunContext
from clbench.method import Answer, EvalRequest
from clbench.plan import resolve_device
from clbench.progress import Progress
from clbench.record import RunState, build_record, now

if TYPE_CHECKING:
    from clbench.data import Source
    from clbench.plan import Plan


def set_threads(threads: int) -> None:
    """Fix torch's intra-op threads (recorded in the config)."""
    import torch

    torch.set_num_threads(threads)


class Evaluator:
    """Scores a method on the run's test batches: the diagonal after each task, both matrices'
    rows at each evaluation point, and the validation split at the end.

    ``diagonal`` is the run's list (a resumed run's holds its earlier tasks); ``after_task``
    appends to it.
    """

    def __init__(self, ctx: RunContext, method: Any, variants: list[str],
                 diagonal: list[float]) -> None:
        self.ctx, self.method, self.variants = ctx, method, variants
        self.scenario = ctx.scenario
        self.diagonal = diagonal

    def oracle(self, tasks: list[int], point: int) -> tuple[list[float], list[Any]]:
        """Task-given accuracy of ``tasks`` on the test batches of evaluation point ``point``
        (batch order depends on the point), and those batches."""
        batches = [self.ctx.test_batches(t, point) for t in tasks]
        answers = self.method.predict([EvalRequest(t, b) for t, b in zip(tasks, batches)])
        scores = [self._score(b, a, t, given=True) for t, b, a in zip(tasks, batches, answers)]
        return [s.accuracy for s in scores], batches

    def after_task(self, task: int) -> None:
        """Oracle accuracy of the task just learned (the diagonal)."""
        accuracy, _ = self.oracle([task], point=task + 1)
        self.diagonal.append(accuracy[0])

    def evaluation_point(self, learned: int) -> dict[str, Any]:
        """The evaluation point after ``learned`` tasks: oracle and scenario accuracy of every
        task learned so far (one entry of the record's ``checkpoints``)."""
        tasks = list(range(learned))
        earlier, batches = self.oracle(tasks[:-1], learned) if learned > 1 else ([], [])
        oracle = earlier + [self.diagonal[learned - 1]]  # same batches as the diagonal
        entry: dict[str, Any] = {"after_tasks": learned, "oracle": oracle}
        if not self.scenario.infers_task:
            entry["accuracy"] = {v: list(oracle) for v in self.variants}
            entry["task_inference"] = {v: None for v in self.variants}
            return entry
        batches = batches + [self.ctx.test_batches(learned - 1, learned)]
        answers = self.method.predict([EvalRequest(None, b) for b in batches])
        entry["accuracy"], entry["task_inference"] = {}, {}
        for v in self.variants:
            scores = [
                self._score(b, self._variant(a, v), t, given=False)
                for t, b, a in zip(tasks, batches, answers)
            ]
            entry["accuracy"][v] = [s.accuracy for s in scores]
            inference = [s.task_inference for s in scores]
            entry["task_inference"][v] = None if all(i is None for i in inference) else inference
        return entry

    def validation(self, learned: int) -> dict[str, Any]:
        """Task-given accuracy of every task on its held-out validation split (for choosing
        hyper-parameters without the test set)."""
        tasks = list(range(learned))
        batches = [self.ctx.val_batches(t) for t in tasks]
        answers = self.method.predict([EvalRequest(t, b) for t, b in zip(tasks, batches)])
        per_task = [self._score(b, a, t, given=True).accuracy
                    for t, b, a in zip(tasks, batches, answers)]
        return {"oracle": per_task, "accuracy": metrics.average(per_task)}

    @staticmethod
    def _variant(answer: Answer, variant: str) -> Answer:
        if answer.variants is None:
            return answer
        if variant not in answer.variants:
            raise RuntimeError(f"method answered no variant '{variant}'")
        return answer.variants[variant]

    def _score(self, batches: Any, answer: Answer, task: int, given: bool) -> metrics.Score:
        labels = [batches.labels(b) for b in range(len(batches))]
        inferred = None if given or self.scenario.name == "nns" else answer.tasks
        incremental = self.ctx.label_view == "class-incremental"
        return metrics.score(
            labels, answer.predictions, task, inferred=inferred,
            wrong_task_is_wrong=self.scenario.wrong_task_is_wrong,
            per_task_classes=self.ctx.props.classes_per_task if incremental and not given
            else None,
        )


def execute(
    plan: Plan, source: Source, command: list[str], *, device: Any = None,
    show_progress: bool = True, checkpoint: Path | None = None,
    say: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run ``plan`` on ``source`` and return its complete record (the caller stores it).

    ``device`` is the resolved torch device (resolved here from the config when not given).
    With ``checkpoint``, the method's state and the run state are saved there after every task,
    and a run finding a checkpoint of its config resumes after its last task. ``say`` receives
    the notes worth showing (a resume, a method that cannot checkpoint).
    """
    say = say or (lambda note: None)
    config = plan.config
    state = RunState.begin()  # the code as it was when the run began
    clock = time.perf_counter()
    set_threads(config.threads)
    device = resolve_device(config.device) if device is None else device
    task_defs, stream_info = plan.benchmark.build(source, config.tasks, config.data_seed)
    per_task = config.iters or config.epochs * -(-len(source.train.y) // config.batch_size)
    progress = Progress(config.tasks * per_task, f"{config.method} {config.scenario}",
                        show_progress)
    ctx = RunContext(config, plan.scenario, plan.props, source, task_defs, device, progress.tick)
    experiences = avalanche_streams(ctx).train_stream
    method = plan.method(ctx)
    state.variants = (plan.method.variants(config.params) if plan.scenario.infers_task
                      else ["default"])
    state.stream = {"properties": {"tasks": plan.props.tasks,
                                   "classes_per_task": plan.props.classes_per_task,
                                   "input_shape": list(plan.props.input_shape)},
                    "outputs": ctx.outputs, **stream_info}
    state.stream_identity = stream_identity(task_defs, source)
    state.timing = {"setup_s": time.perf_counter() - clock, "train_s": 0.0, "eval_s": 0.0,
                    "train_s_per_task": []}
    saved = checkpoint_io.load(checkpoint, config.to_dict()) if checkpoint else None
    if saved is not None:
        state = resumed(state, *saved, method)
        progress.resume(state.learned * per_task)
        say(f"resuming after task {state.learned} of {config.tasks} from {checkpoint}")
    evaluator = Evaluator(ctx, method, state.variants, state.diagonal)
    timing = state.timing
    earlier = timing.get("total_s", 0.0)
    for task, experience in enumerate(experiences):
        if task < state.learned:
            continue
        progress.set_note(f"task {task + 1}/{config.tasks}")
        tick = time.perf_counter()
        method.train_experience(experience)
        trained = time.perf_counter() - tick
        timing["train_s"] += trained
        timing["train_s_per_task"].append(round(trained, 3))
        tick = time.perf_counter()
        evaluator.after_task(task)
        state.learned = task + 1
        if state.learned in config.eval_at:
            progress.set_note(f"evaluating after {state.learned} tasks")
            point = evaluator.evaluation_point(state.learned)
            point["bytes"] = {k: {"bytes": b.bytes, "formula": b.formula}
                              for k, b in method.bytes().items()}
            state.points.append(point)
        timing["eval_s"] += time.perf_counter() - tick
        if checkpoint is not None and state.learned < config.tasks:
            method_state = method.state_dict()
            if method_state is None:
                say(f"note: {config.method} cannot checkpoint: an interrupted run restarts "
                    "from its first task")
                checkpoint = None
            else:
                timing["total_s"] = earlier + time.perf_counter() - clock
                checkpoint_io.save(checkpoint, config.to_dict(), state, method_state)
    progress.close()
    if config.val_fraction > 0:
        tick = time.perf_counter()
        state.validation = evaluator.validation(config.tasks)
        timing["eval_s"] += time.perf_counter() - tick
    timing["total_s"] = earlier + time.perf_counter() - clock
    for key in ("setup_s", "train_s", "eval_s", "total_s"):
        timing[key] = round(timing[key], 3)
    state.extras = method.extras()
    return build_record(config, command, state)


def resumed(fresh: RunState, saved: RunState, method_state: dict[str, Any], method: Any
            ) -> RunState:
    """The saved state of an interrupted run, continued by this process: the method restored,
    this process's setup time added and the resume noted."""
    method.load_state_dict(method_state)
    saved.stream, saved.variants = fresh.stream, fresh.variants
    saved.stream_identity = fresh.stream_identity
    saved.timing = {**saved.timing,
                    "setup_s": saved.timing["setup_s"] + fresh.timing["setup_s"]}
    saved.resumes.append({"at_task": saved.learned + 1, "git_commit": provenance.git_commit(),
                          "at": now()})
    return saved

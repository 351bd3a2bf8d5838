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
from clbench.progress import Progress, ShowProgress
from clbench.record import RunState, build_record, now

if TYPE_CHECKING:
    from clbench.data import Source
    from clbench.live import Live
    from clbench.plan import Plan


def set_threads(threads: int) -> None:
    """Fix torch's intra-op threads (recorded in the config)."""
    import torch

    torch.set_num_threads(threads)


class Evaluator:
    """Scores a method on the run's test batches: the diagonal after each task, both matrices'
    rows at each evaluation point, and the validation split at the end.

    ``diagonal`` is the run's list (a resumed run's holds its earlier tasks); ``after_task``
    appends to it. ``save``, when set, receives an evaluation point's progress while it is
    evaluated (see :meth:`evaluation_point`) and writes it into the run's checkpoint; ``tell``
    hears where the point stands (:meth:`Progress.scoring
    <clbench.progress.Progress.scoring>`) as each part begins and after each slice.
    """

    #: A slice of an evaluation point grows by whole tasks until it holds this many test
    #: batches (in the inferred part, one task decision each: One-Shot is efficient from
    #: ~1,000 decisions per call).
    slice_batches: int = 2000
    #: After a slice, the point's progress is saved when this many seconds have passed since
    #: the point began (in this process) or was last saved: a checkpoint holds the method's
    #: state too (~100 MB with 2,500 masks), so a fast evaluation is never saved midway.
    save_every_s: float = 60.0

    def __init__(self, ctx: RunContext, method: Any, variants: list[str],
                 diagonal: list[float],
                 save: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.ctx, self.method, self.variants = ctx, method, variants
        self.scenario = ctx.scenario
        self.diagonal = diagonal
        self.save = save
        self.tell: Callable[[str, int, int, bool], None] = lambda part, done, total, last: None
        self._saved_at = 0.0

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

    def evaluation_point(self, learned: int, progress: dict[str, Any] | None = None
                         ) -> dict[str, Any]:
        """The evaluation point after ``learned`` tasks: oracle and scenario accuracy of every
        task learned so far (one entry of the record's ``checkpoints``).

        Evaluated in slices of consecutive tasks, first with the task given (the last task's
        is the diagonal), then with it inferred. A slice grows until it holds
        :attr:`slice_batches` test batches or its part runs out; a method without
        ``independent_requests`` gets one slice per part. After a slice, while tasks remain,
        the progress (per-task results so far) goes to ``save`` at most every
        :attr:`save_every_s` seconds; a resumed run passes it back as ``progress`` and goes on
        after its last slice. Batches depend only on (seed, point, task), so the numbers do
        not depend on the slicing.
        """
        tasks = list(range(learned))
        if progress is None:
            progress = {"after_tasks": learned, "oracle": [],
                        "accuracy": {v: [] for v in self.variants},
                        "task_inference": {v: [] for v in self.variants}}
        elif progress["after_tasks"] != learned:
            raise ValueError(f"progress of the point after {progress['after_tasks']} tasks "
                             f"cannot finish the point after {learned}")
        self._saved_at = time.perf_counter()
        infers = self.scenario.infers_task
        given = tasks[len(progress["oracle"]):-1]
        self.tell("task given", len(progress["oracle"]) + 1, learned, not infers)
        for part in self._slices(given, learned):
            accuracy, _ = self.oracle(part, learned)
            progress["oracle"] += accuracy
            self.tell("task given", len(progress["oracle"]) + 1, learned, not infers)
            self._saving(progress, more=infers or part[-1] != given[-1])
        oracle = progress["oracle"] + [self.diagonal[learned - 1]]  # the diagonal's batches
        entry: dict[str, Any] = {"after_tasks": learned, "oracle": oracle}
        if not infers:
            entry["accuracy"] = {v: list(oracle) for v in self.variants}
            entry["task_inference"] = {v: None for v in self.variants}
            return entry
        inferring = tasks[len(progress["accuracy"][self.variants[0]]):]
        self.tell("task inferred", learned - len(inferring), learned, True)
        for part in self._slices(inferring, learned):
            batches = [self.ctx.test_batches(t, learned) for t in part]
            answers = self.method.predict([EvalRequest(None, b) for b in batches])
            for v in self.variants:
                scores = [self._score(b, self._variant(a, v), t, given=False)
                          for t, b, a in zip(part, batches, answers)]
                progress["accuracy"][v] += [s.accuracy for s in scores]
                progress["task_inference"][v] += [s.task_inference for s in scores]
            self.tell("task inferred", len(progress["accuracy"][self.variants[0]]), learned,
                      True)
            self._saving(progress, more=part[-1] != inferring[-1])
        entry["accuracy"] = {v: list(progress["accuracy"][v]) for v in self.variants}
        entry["task_inference"] = {
            v: None if all(i is None for i in inference) else list(inference)
            for v, inference in progress["task_inference"].items()}
        return entry

    @staticmethod
    def progress_note(progress: dict[str, Any], infers: bool) -> str:
        """Where an interrupted evaluation point stands, in words."""
        learned = progress["after_tasks"]
        given = len(progress["oracle"]) + 1  # the last task's is the diagonal
        note = f"inside the evaluation after {learned} tasks: {given} of {learned} tasks " \
               "evaluated with the task given"
        if infers:
            inferred = len(next(iter(progress["accuracy"].values()), []))
            note += f", {inferred} of {learned} with it inferred"
        return note

    def _slices(self, tasks: list[int], point: int) -> list[list[int]]:
        """``tasks`` cut into consecutive slices of at least :attr:`slice_batches` test
        batches (the last may hold fewer); one slice when the method pools requests."""
        if not tasks:
            return []
        if not getattr(self.method, "independent_requests", False):
            return [tasks]
        slices: list[list[int]] = [[]]
        count = 0
        for t in tasks:
            if count >= self.slice_batches:
                slices.append([])
                count = 0
            slices[-1].append(t)
            count += len(self.ctx.test_batches(t, point))
        return slices

    def _saving(self, progress: dict[str, Any], more: bool) -> None:
        """Hand ``progress`` to ``save`` when tasks remain and it is time (see above)."""
        if self.save is None or not more:
            return
        if time.perf_counter() - self._saved_at >= self.save_every_s:
            self.save(progress)
            self._saved_at = time.perf_counter()

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
    show_progress: ShowProgress = True, checkpoint: Path | None = None,
    say: Callable[[str], None] | None = None, live: Live | None = None,
) -> dict[str, Any]:
    """Run ``plan`` on ``source`` and return its complete record (the caller stores it).

    ``device`` is the resolved torch device (resolved here from the config when not given).
    With ``checkpoint``, the method's state and the run state are saved there after every task
    and, during a long evaluation point, after slices of its tasks (:class:`Evaluator`); a run
    finding a checkpoint of its config resumes after its last task, inside the evaluation point
    it was in, if any. ``say`` receives the notes worth showing (a resume, a method that
    cannot checkpoint). ``live`` (with ``--log``) receives the loss, per-task summaries and
    evaluation points as they come; the caller closes it.
    """
    say = say or (lambda note: None)
    config = plan.config
    state = RunState.begin()  # the code as it was when the run began
    provenance.reset_peak_memory()  # this run's peak, not an earlier run's in this process
    clock = time.perf_counter()
    set_threads(config.threads)
    device = resolve_device(config.device) if device is None else device
    task_defs, stream_info = plan.benchmark.build(source, config.tasks, config.data_seed)
    per_task = config.iters or config.epochs * -(-len(source.train.y) // config.batch_size)
    lines_only = show_progress == "lines"
    label = f"{config.method} {config.scenario}" + (f" {config.run_id}" if lines_only else "")
    progress = Progress(config.tasks, per_task, config.eval_at, label, bool(show_progress),
                        lines_only=lines_only)
    saved = checkpoint_io.load(checkpoint, config.to_dict()) if checkpoint else None
    if live is not None:
        live.begin(config.to_dict(), saved[0].learned if saved is not None else 0, per_task)
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
                    "train_s_per_task": [], "eval_s_per_task": []}
    inside = 0.0  # seconds an earlier process spent inside the evaluation point it stopped in
    if saved is not None:
        state = resumed(state, *saved, method)
        after_s = state.timing.get("eval_s_per_task")  # absent in checkpoints before it
        if after_s is not None and state.partial is not None and len(after_s) == state.learned:
            inside = after_s.pop()
        progress.resume(state.learned, state.timing["train_s_per_task"], after_s or [])
        note = f"resuming after task {state.learned} of {config.tasks} from {checkpoint}"
        if state.partial is not None:
            note += ", " + Evaluator.progress_note(state.partial, plan.scenario.infers_task)
        say(note)
    evaluator = Evaluator(ctx, method, state.variants, state.diagonal)
    timing = state.timing
    earlier = timing.get("total_s", 0.0)
    tick = clock

    def save() -> None:
        nonlocal checkpoint
        method_state = method.state_dict()
        if method_state is None:
            say(f"note: {config.method} cannot checkpoint: an interrupted run restarts "
                "from its first task")
            checkpoint = evaluator.save = None
        elif checkpoint is not None:
            timing["total_s"] = earlier + time.perf_counter() - clock
            checkpoint_io.save(checkpoint, config.to_dict(), state, method_state)

    def count_after(after: float, counted: float) -> None:
        """Count ``after`` seconds of the work after a task, ``counted`` of them already in
        the total (an earlier process's part of an evaluation point)."""
        timing["eval_s"] += after - counted
        if "eval_s_per_task" in timing:
            timing["eval_s_per_task"].append(round(after, 3))

    def uncount_after(after: float, counted: float) -> None:
        timing["eval_s"] -= after - counted
        if "eval_s_per_task" in timing:
            timing["eval_s_per_task"].pop()

    def save_inside(progress: dict[str, Any]) -> None:
        """Save inside an evaluation point: its progress, the time spent on it counted."""
        state.partial, spent = progress, inside + time.perf_counter() - tick
        count_after(spent, inside)
        try:
            save()
        finally:
            uncount_after(spent, inside)
            state.partial = None

    def evaluated(learned: int, after: float) -> None:
        """The work after task ``learned`` is done: to the live loggers."""
        if live is not None:
            live.evaluated(learned, state.diagonal[learned - 1], after)
            if state.points and state.points[-1]["after_tasks"] == learned:
                live.point(state.points[-1], state.variants)

    evaluator.tell = progress.scoring
    if checkpoint is not None:
        evaluator.save = save_inside
    with progress:  # stops redrawing, also when the run fails
        if state.partial is not None:  # stopped inside the evaluation point after state.learned
            progress.evaluating(state.learned)
            tick = time.perf_counter()
            add_point(evaluator, method, state, state.partial)
            after = inside + time.perf_counter() - tick
            count_after(after, inside)
            evaluated(state.learned, after)
            inside = 0.0
            if checkpoint is not None and state.learned < config.tasks:
                save()
        for task, experience in enumerate(experiences):
            if task < state.learned:
                continue
            progress.training(task)
            if live is not None:
                live.training(task)
            tick = time.perf_counter()
            method.train_experience(experience)
            trained = time.perf_counter() - tick
            if live is not None:
                live.trained(trained)
            timing["train_s"] += trained
            timing["train_s_per_task"].append(round(trained, 3))
            progress.evaluating(task + 1)
            tick = time.perf_counter()
            evaluator.after_task(task)
            state.learned = task + 1
            if state.learned in config.eval_at:
                add_point(evaluator, method, state)
            after = time.perf_counter() - tick
            count_after(after, 0.0)
            evaluated(state.learned, after)
            if checkpoint is not None and state.learned < config.tasks:
                save()
    progress.close()
    if config.val_fraction > 0:
        tick = time.perf_counter()
        state.validation = evaluator.validation(config.tasks)
        timing["eval_s"] += time.perf_counter() - tick
    timing["total_s"] = earlier + time.perf_counter() - clock
    for key in ("setup_s", "train_s", "eval_s", "total_s"):
        timing[key] = round(timing[key], 3)
    state.extras = method.extras()
    if live is not None:
        state.train_loss = live.record_losses()
    return build_record(config, command, state)


def add_point(evaluator: Evaluator, method: Any, state: RunState,
              progress: dict[str, Any] | None = None) -> None:
    """Evaluate the point after ``state.learned`` tasks (from ``progress`` when resumed inside
    it) and add it, with the method's bytes, to ``state.points``."""
    point = evaluator.evaluation_point(state.learned, progress)
    point["bytes"] = {k: {"bytes": b.bytes, "formula": b.formula}
                      for k, b in method.bytes().items()}
    state.points.append(point)
    state.partial = None


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

"""One run: build the stream and the method, train task by task, evaluate at checkpoints,
and fill the record (FACIL's loop: the task-given oracle matrix and the scenario's matrix from
the same run)."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clbench import checkpoint as checkpoint_io
from clbench import metrics, provenance
from clbench.avalanche import avalanche_streams
from clbench.config import SCHEMA_VERSION
from clbench.context import RunContext
from clbench.errors import ClbenchError
from clbench.method import Answer, EvalRequest
from clbench.progress import Progress

if TYPE_CHECKING:
    from clbench.data import Source
    from clbench.plan import Plan


def set_threads(threads: int) -> None:
    """Fix torch's intra-op threads (recorded in the config)."""
    import torch

    torch.set_num_threads(threads)


def resolve_device(name: str) -> Any:
    import torch

    try:
        device = torch.device(name)
    except RuntimeError:
        raise ClbenchError(
            f"--device {name}: not a torch device (use cpu, cuda or cuda:N)"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ClbenchError(f"--device {name}: CUDA is not available here; use --device cpu")
    return device


class Evaluator:
    """Scores a method on the engine's test batches and keeps the diagonal."""

    def __init__(self, ctx: RunContext, method: Any, variants: list[str]) -> None:
        self.ctx, self.method, self.variants = ctx, method, variants
        self.scenario = ctx.scenario
        self.diagonal: list[float] = []

    def oracle(self, tasks: list[int], checkpoint: int) -> tuple[list[float], list[Any]]:
        batches = [self.ctx.test_batches(t, checkpoint) for t in tasks]
        answers = self.method.predict([EvalRequest(t, b) for t, b in zip(tasks, batches)])
        scores = [self._score(b, a, t, given=True) for t, b, a in zip(tasks, batches, answers)]
        return [s.accuracy for s in scores], batches

    def after_task(self, task: int) -> None:
        """Oracle accuracy of the task just learned (the diagonal)."""
        accuracy, _ = self.oracle([task], checkpoint=task + 1)
        self.diagonal.append(accuracy[0])

    def checkpoint(self, learned: int) -> dict[str, Any]:
        """Oracle and scenario accuracy of every task learned so far."""
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
    plan: Plan, source: Source, command: list[str], show_progress: bool = True,
    checkpoint: Path | None = None, say: Callable[[str], None] = print,
) -> dict:
    """Run ``plan`` on ``source`` and return its complete record (the caller stores it).

    With ``checkpoint``, the method's state and the evaluation so far are saved there after
    every task, and a run finding a checkpoint of its config resumes after its last task.
    """
    config = plan.config
    started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    environment = {"versions": provenance.versions(), "git_commit": provenance.git_commit(),
                   "machine": provenance.machine()}  # the code as it was when the run began
    clock = time.perf_counter()
    set_threads(config.threads)
    device = resolve_device(config.device)
    task_defs, stream_info = plan.benchmark.build(source, config.tasks, config.data_seed)
    per_task = config.iters or config.epochs * -(-len(source.train.y) // config.batch_size)
    progress = Progress(config.tasks * per_task, f"{config.method} {config.scenario}",
                        show_progress)
    ctx = RunContext(config, plan.scenario, plan.props, source, task_defs, device, progress.tick)
    benchmark = avalanche_streams(ctx)
    method = plan.method(ctx)
    variants = plan.method.variants(config.params) if plan.scenario.infers_task else ["default"]
    evaluator = Evaluator(ctx, method, variants)
    timing: dict[str, Any] = {"setup_s": time.perf_counter() - clock, "train_s": 0.0,
                              "eval_s": 0.0, "train_s_per_task": []}
    checkpoints: list[dict[str, Any]] = []
    resumes: list[dict[str, Any]] = []
    saved = checkpoint_io.load(checkpoint, config.to_dict()) if checkpoint else None
    if saved is not None:
        method.load_state_dict(saved["method"])
        evaluator.diagonal, checkpoints = saved["diagonal"], saved["checkpoints"]
        started, environment, resumes = saved["started_at"], saved["environment"], saved["resumes"]
        timing = {**saved["timing"], "setup_s": saved["timing"]["setup_s"] + timing["setup_s"]}
        resumes.append({"at_task": saved["learned"] + 1, "git_commit": provenance.git_commit(),
                        "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")})
        progress.resume(saved["learned"] * per_task)
        say(f"resuming after task {saved['learned']} of {config.tasks} from {checkpoint}")
    learned = 0 if saved is None else saved["learned"]
    earlier = timing.get("total_s", 0.0)
    for task, experience in enumerate(benchmark.train_stream):
        if task < learned:
            continue
        progress.set_note(f"task {task + 1}/{config.tasks}")
        tick = time.perf_counter()
        method.train_experience(experience)
        trained = time.perf_counter() - tick
        timing["train_s"] += trained
        timing["train_s_per_task"].append(round(trained, 3))
        tick = time.perf_counter()
        evaluator.after_task(task)
        if task + 1 in config.eval_at:
            progress.set_note(f"evaluating after {task + 1} tasks")
            entry = evaluator.checkpoint(task + 1)
            entry["bytes"] = {k: {"bytes": b.bytes, "formula": b.formula}
                              for k, b in method.bytes().items()}
            checkpoints.append(entry)
        timing["eval_s"] += time.perf_counter() - tick
        if checkpoint is not None and task + 1 < config.tasks:
            state = method.state_dict()
            if state is None:
                say(f"note: {config.method} cannot checkpoint: an interrupted run restarts "
                    "from its first task")
                checkpoint = None
            else:
                timing["total_s"] = earlier + time.perf_counter() - clock
                checkpoint_io.save(checkpoint, config.to_dict(), {
                    "learned": task + 1, "method": state, "diagonal": evaluator.diagonal,
                    "checkpoints": checkpoints, "timing": timing, "started_at": started,
                    "environment": environment, "resumes": resumes})
    progress.close()
    validation = None
    if config.val_fraction > 0:
        tick = time.perf_counter()
        validation = evaluator.validation(config.tasks)
        timing["eval_s"] += time.perf_counter() - tick
    timing["total_s"] = earlier + time.perf_counter() - clock
    for key in ("setup_s", "train_s", "eval_s", "total_s"):
        timing[key] = round(timing[key], 3)
    record = {
        "schema_version": SCHEMA_VERSION,
        "run_id": config.run_id,
        "status": "complete",
        "error": None,
        "config": config.to_dict(),
        "stream": {"properties": {"tasks": plan.props.tasks,
                                  "classes_per_task": plan.props.classes_per_task,
                                  "input_shape": list(plan.props.input_shape)},
                   "outputs": ctx.outputs, **stream_info},
        "variants": variants,
        "diagonal": evaluator.diagonal,
        "checkpoints": checkpoints,
        "final": summary(checkpoints, evaluator.diagonal, variants),
        "extras": method.extras(),
        "timing": timing,
        "peak_memory_mb": provenance.peak_memory_mb(),
        "environment": environment,
        "command": command,
        "started_at": started,
        "finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    if validation is not None:
        record["validation"] = validation
    if resumes:
        record["resumes"] = resumes
    return record


def summary(checkpoints: list[dict], diagonal: list[float], variants: list[str]) -> dict:
    """Final average accuracy per variant, with oracle accuracy, forgetting and BWT."""
    if not checkpoints:
        return {}
    last = checkpoints[-1]
    rows = [c["oracle"] for c in checkpoints]
    shared = {
        "oracle_accuracy": metrics.average(last["oracle"]),
        "forgetting": metrics.forgetting(rows, diagonal),
        "backward_transfer": metrics.backward_transfer(rows, diagonal),
    }
    out = {}
    for v in variants:
        inference = last["task_inference"][v]
        out[v] = {"accuracy": metrics.average(last["accuracy"][v]),
                  "task_inference": metrics.average(inference) if inference else None, **shared}
    return out

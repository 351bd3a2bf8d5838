"""Progress that tells the truth: with a fake clock and evaluation cost growing with the tasks
learned, the ETA follows the real remaining time where a linear extrapolation runs short; it is
never zero while work remains; the bar of a resumed run starts where it resumes."""

from __future__ import annotations

import io
import re
import time

import pytest

from clbench.progress import Eta, Progress, fit_growth


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def eta_of(line: str) -> float:
    match = re.search(r"ETA (\d+):(\d\d)(?::(\d\d))?$", line)
    assert match, line
    h, m, s = (0, *map(int, match.groups()[:2])) if match.group(3) is None else map(
        int, match.groups())
    return 3600 * h + 60 * m + s


def simulate(tasks, per_task, step_s, eval_cost, eval_at, progress, clock, probe=None):
    """Drive ``progress`` as the engine does; ``probe(task, progress)`` runs at the start of
    each task's training and mid-evaluation; returns the total simulated seconds."""
    start = clock.now
    for task in range(tasks):
        progress.training(task)
        if probe:
            probe(task, "training", progress)
        for _ in range(per_task):
            clock.now += step_s(task)
            progress.tick()
        progress.evaluating(task + 1)
        k = task + 1
        cost = eval_cost(k) if k in eval_at else eval_cost(1) / 4
        clock.now += cost / 2
        if probe:
            probe(task, "evaluating", progress)
        clock.now += cost / 2
    progress.close()
    return clock.now - start


COSTS = {  # seconds of the work after k tasks: One-Shot under task inference, task given
    "quadratic": lambda k: 0.05 * k + 0.02 * k * k,
    "linear": lambda k: 0.02 + 0.3 * k,
}


@pytest.mark.parametrize("growth", sorted(COSTS))
def test_eta_models_evaluation_that_grows_with_tasks_learned(growth):
    tasks, per_task, cost = 40, 50, COSTS[growth]
    eval_at = set(range(1, tasks + 1))

    def fresh(clock):
        return Progress(tasks, per_task, sorted(eval_at), "m", enabled=False, clock=clock)

    clock = Clock()
    total = simulate(tasks, per_task, lambda t: 0.02, cost, eval_at, fresh(clock), clock)
    clock = Clock()
    progress = fresh(clock)
    seen = []

    def probe(task, phase, p):
        elapsed = clock.now - 100.0
        if phase == "training" and elapsed >= 0.25 * total and len(seen) < 3:
            seen.append((task, eta_of(p.line()), total - elapsed, elapsed))

    simulate(tasks, per_task, lambda t: 0.02, cost, eval_at, progress, clock, probe)
    for task, eta, truth, elapsed in seen:  # from a quarter of the run on
        assert abs(eta - truth) <= 0.25 * truth, (task, eta, truth)
        linear = elapsed * (tasks - task) / task  # extrapolating from the tasks done
        assert abs(eta - truth) < abs(linear - truth), (task, eta, linear, truth)


def test_an_evaluation_point_not_yet_timed_counts_at_least_scoring_every_task_once():
    """A run evaluated only at its end (`--eval-at end`): the point after 100 tasks scores 100
    tasks with the task given, where the work after each task scores one."""
    eta = Eta(tasks=100, per_task=10, eval_at=[100])
    eta.trained = [(10, 1.0)] * 50
    eta.after = dict.fromkeys(range(1, 51), 0.2)  # scoring the task just learned
    assert eta.remaining(50, 0, 0.0, False, 0.0) == pytest.approx(50 * 1.0 + 49 * 0.2 + 100 * 0.2)
    assert eta.remaining(100, 0, 0.0, True, 5.0) == pytest.approx(100 * 0.2 - 5.0)


def test_inside_an_evaluation_point_the_eta_follows_the_rate_of_its_part():
    """A point whose task inference costs 1 s per task where the model expects 0.2 s (the
    scoring after a task): once a slice of its part is scored, the ETA is that part's rate."""
    clock = Clock()
    progress = Progress(100, 10, [100], enabled=False, clock=clock)
    progress.resume(99, [1.0] * 99, [0.2] * 98)
    progress.training(99)
    for _ in range(10):
        clock.now += 0.1
        progress.tick()
    progress.evaluating(100)
    progress.scoring("task given", 1, 100, False)
    clock.now += 10.0
    progress.scoring("task given", 50, 100, False)  # 10 s for 49 tasks: 10.2 s left
    assert eta_of(progress.line()) == 10 and "(task given: 50/100)" in progress.line()
    clock.now += 10.0
    progress.scoring("task given", 100, 100, False)
    progress.scoring("task inferred", 0, 100, True)
    assert eta_of(progress.line()) == 2  # modelled: 100 x 0.2 s are over, 10 % of 20 s more
    clock.now += 30.0
    progress.scoring("task inferred", 30, 100, True)
    line = progress.line()
    assert line.endswith("evaluating after 100/100 tasks (task inferred: 30/100) · 10 steps/s "
                         "· 00:50 elapsed · ETA 01:10")
    progress.close()
    assert "task inferred" not in progress.line()


def test_eta_follows_a_machine_that_slows_down():
    tasks, per_task = 40, 40
    clock = Clock()
    progress = Progress(tasks, per_task, [10, 20, 30, 40], enabled=False, clock=clock)
    checks = []

    def probe(task, phase, p):
        if phase == "training" and task == 30:
            checks.append(p.eta.rate())

    simulate(tasks, per_task, lambda t: 0.01 if t < 6 else 0.03, lambda k: 0.1 * k,
             {10, 20, 30, 40}, progress, clock, probe)
    window = progress.eta.window
    assert window < 30 - 6  # the test needs a window of slow tasks only
    assert checks[0] == pytest.approx(1 / 0.03)  # the recent rate, not the whole run's


def test_eta_is_never_zero_while_work_remains_and_phases_are_shown():
    clock = Clock()
    stream = Tty()
    progress = Progress(3, 10, [1, 2, 3], "supsup gnu", clock=clock, stream=stream)
    progress.every = 3600.0  # no redraws from the heartbeat thread during the test
    lines = []

    def probe(task, phase, p):
        lines.append(p.line())
        if task == 2 and phase == "evaluating":
            clock.now += 1000  # the final evaluation overruns any prediction
            lines.append(p.line())

    simulate(3, 10, lambda t: 0.1, lambda k: 1.0 * k, {1, 2, 3}, progress, clock, probe)
    assert "training task 1/3" in lines[0] and "evaluating after 3/3 tasks" in lines[-1]
    assert "steps/s" in lines[-1] and "elapsed" in lines[-1]
    assert all(eta_of(line) >= 1 for line in lines if "--:--" not in line)
    assert eta_of(lines[-1]) >= 100  # overrunning: still some time left, growing with it
    out = stream.getvalue()
    assert "\r" in out and out.endswith("\n") and "done, 3 tasks" in out


def test_plain_lines_off_a_terminal_and_nothing_when_disabled():
    clock = Clock()
    plain = io.StringIO()
    progress = Progress(2, 5, [2], "x", clock=clock, stream=plain)
    progress.every = 3600.0
    simulate(2, 5, lambda t: 0.1, lambda k: 0.5, {2}, progress, clock)
    assert "\r" not in plain.getvalue() and plain.getvalue().count("\n") == 1
    quiet = io.StringIO()
    simulate(2, 5, lambda t: 0.1, lambda k: 0.5, {2},
             Progress(2, 5, [2], "x", enabled=False, clock=clock, stream=quiet), clock)
    assert quiet.getvalue() == ""


def test_a_sweeps_worker_writes_labelled_plain_lines_even_on_a_terminal_and_no_closing_line():
    clock = Clock()
    stream = Tty()  # the sweep's stderr, shared by its workers
    progress = Progress(2, 5, [2], "supsup gnu 4835cf34d030c772", lines_only=True, clock=clock,
                        stream=stream)
    progress.every = 0.01
    progress.training(0)
    deadline = time.monotonic() + 5
    while stream.getvalue().count("\n") < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    progress.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) >= 3 and "\r" not in stream.getvalue()
    assert all(line.startswith("supsup gnu 4835cf34d030c772 [") for line in lines)
    assert not any("done," in line for line in lines)


def test_elapsed_time_includes_the_setup_before_the_first_task():
    clock = Clock()
    stream = io.StringIO()
    progress = Progress(1, 4, [1], "x", clock=clock, stream=stream)
    progress.every = 3600.0
    clock.now += 8.0  # building the stream and the method
    simulate(1, 4, lambda t: 0.25, lambda k: 0.5, {1}, progress, clock)
    assert "00:09 elapsed" in stream.getvalue().splitlines()[-1]  # 8 s + 1 s + 0.5 s


def test_a_resumed_run_starts_its_bar_where_it_resumes():
    clock = Clock()
    progress = Progress(10, 20, list(range(1, 11)), enabled=False, clock=clock)
    progress.resume(6)
    progress.training(6)
    for _ in range(10):
        clock.now += 0.1
        progress.tick()
    line = progress.line()
    assert "training task 7/10" in line
    percent = int(re.search(r"\] +(\d+)%", line).group(1))
    assert percent >= 60


def test_a_resumed_runs_eta_counts_the_evaluation_points_measured_before_it():
    """Resumed after 30 of 40 tasks, each evaluation point dearer than the last: the ETA
    knows the points measured before the resume from the checkpoint's seconds per task.
    Without them it counted training only, far short (a 2,500-task run said 53 min for about
    3 h)."""
    tasks, per_task, cost, eval_at = 40, 50, COSTS["quadratic"], set(range(10, 41, 10))
    clock = Clock()
    whole = Progress(tasks, per_task, sorted(eval_at), enabled=False, clock=clock)
    marks = []
    simulate(tasks, per_task, lambda t: 0.02, cost, eval_at, whole, clock,
             lambda task, phase, p: marks.append(clock.now) if phase == "training" else None)
    truth = clock.now - marks[30]  # from the start of task 31 to the end
    trained = [per_task * 0.02] * 30
    after = [cost(k) if k in eval_at else cost(1) / 4 for k in range(1, 31)]

    def eta_after_resume(*seeds):
        clock = Clock()
        progress = Progress(tasks, per_task, sorted(eval_at), enabled=False, clock=clock)
        progress.resume(30, *seeds)
        progress.training(30)
        for _ in range(5):
            clock.now += 0.02
            progress.tick()
        return eta_of(progress.line())

    assert abs(eta_after_resume(trained, after) - truth) <= 0.25 * truth
    assert eta_after_resume() < 0.5 * truth


def test_fit_growth_measures_the_exponent_and_shrugs_off_a_slow_point():
    quadratic = fit_growth([(k, 0.01 * k * k) for k in range(1, 26)])
    assert quadratic(100) == pytest.approx(100.0, rel=1e-6)
    linear = fit_growth([(k, 2.0 * k) for k in (10, 50)])
    assert linear(200) == pytest.approx(400.0)
    noisy = [(k, 0.01 * k * k * (3.0 if k == 20 else 1.0)) for k in range(1, 26)]  # a busy spell
    assert fit_growth(noisy)(100) == pytest.approx(100.0, rel=0.25)
    assert fit_growth([(4, 8.0)])(8) == pytest.approx(16.0)  # one point: cost per task learned
    assert fit_growth([])(5) == 0.0

"""The paper's scenario taxonomy as data: what a method sees and how its answers are scored.

Labels are always per task, ``0..C-1`` on one shared head. "Unshared labels" (GNu) is a scoring
rule, not a label layout: an answer given under a wrongly inferred task is wrong. A method that
cannot infer the task sees a named *label view* instead:

- ``task``: per-task labels, and the task id wherever the scenario gives it;
- ``domain``: per-task labels and no task id at all (GNs, NNs for non-inferring methods);
- ``class-incremental``: labels ``y + t*C`` over ``T*C`` outputs (GNu for non-inferring methods;
  any method may ask for it). Its inferred task is counted per sample as ``prediction // C``.
"""

from __future__ import annotations

from dataclasses import dataclass

from clbench.errors import ClbenchError, unknown

LABEL_VIEWS = ("task", "domain", "class-incremental")


@dataclass(frozen=True)
class Scenario:
    """One cell of the taxonomy (Wortsman et al. 2020, Table 1)."""

    name: str
    title: str
    task_id_train: bool
    task_id_test: bool
    wrong_task_is_wrong: bool

    @property
    def infers_task(self) -> bool:
        """Whether the task must be inferred at test time."""
        return not self.task_id_test

    def describe(self) -> str:
        train = "given" if self.task_id_train else "never (the method detects new tasks)"
        test = "given" if self.task_id_test else "inferred"
        if not self.infers_task:
            labels = "per task"
        else:
            labels = "unshared: a wrong task is a wrong answer" if self.wrong_task_is_wrong else (
                "shared"
            )
        return f"task id at training: {train}; at test: {test}; labels: {labels}"

    def label_view(self, method_infers_task: bool, requested: str | None = None) -> str:
        """The label view a method gets here: its request, else the scenario's natural one."""
        if requested is not None:
            if requested not in LABEL_VIEWS:
                raise ClbenchError(
                    f"unknown label view '{requested}': choose one of {', '.join(LABEL_VIEWS)}"
                )
            if requested == "task" and self.infers_task and not method_infers_task:
                raise ClbenchError(
                    f"label view 'task' needs a method that infers the task in {self.name}: use "
                    "'class-incremental' or 'domain'"
                )
            return requested
        if not self.infers_task or method_infers_task:
            return "task"
        return "class-incremental" if self.wrong_task_is_wrong else "domain"


GG = Scenario("gg", "task given at training and test", True, True, False)
GNS = Scenario("gns", "task given at training, inferred at test, shared labels", True, False,
               False)
GNU = Scenario("gnu", "task given at training, inferred at test, unshared labels", True, False,
               True)
NNS = Scenario("nns", "task never given, inferred at test, shared labels", False, False, False)

SCENARIOS: dict[str, Scenario] = {s.name: s for s in (GG, GNS, GNU, NNS)}


def get_scenario(name: str) -> Scenario:
    """Look a scenario up by name, with a one-line error naming the choices."""
    try:
        return SCENARIOS[name.lower()]
    except KeyError:
        raise unknown("scenario", name, SCENARIOS, " (clbench list scenarios)") from None

"""Scoring answers and summarising accuracy matrices (pure Python over lists, no torch)."""

from __future__ import annotations

from dataclasses import dataclass
from statistics import mean
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


@dataclass
class Score:
    """One task's accuracy at one checkpoint, and its task-inference accuracy if defined."""

    accuracy: float
    task_inference: float | None


def score(
    labels: list[torch.Tensor],
    predictions: list[torch.Tensor],
    task: int,
    *,
    inferred: list[int] | None = None,
    wrong_task_is_wrong: bool = False,
    per_task_classes: int | None = None,
) -> Score:
    """Accuracy of one task's answers.

    ``inferred`` (one task per batch): with ``wrong_task_is_wrong`` a batch answered under the
    wrong task scores zero; task inference is counted per decision. ``per_task_classes`` (the
    class-incremental view): labels carry ``t*C``, so a wrong task is already a wrong label and
    task inference is counted per sample as ``prediction // C``.
    """
    correct = total = 0
    decisions_right = samples_right = 0
    for b, (y, p) in enumerate(zip(labels, predictions, strict=True)):
        hits = int((p.to(y.device) == y).sum())
        if inferred is not None:
            right_task = inferred[b] == task
            decisions_right += right_task
            if wrong_task_is_wrong and not right_task:
                hits = 0
        if per_task_classes is not None:
            samples_right += int((p.to(y.device) // per_task_classes == task).sum())
        correct += hits
        total += len(y)
    if inferred is not None:
        inference = decisions_right / max(1, len(labels))
    elif per_task_classes is not None:
        inference = samples_right / max(1, total)
    else:
        inference = None
    return Score(correct / max(1, total), inference)


def average(values: list[float | None]) -> float | None:
    """Mean of the defined values (None when there are none)."""
    present = [v for v in values if v is not None]
    return mean(present) if present else None


def forgetting(rows: list[list[float]], diagonal: list[float]) -> float | None:
    """Mean over all tasks but the last of (best earlier accuracy - final accuracy).

    ``rows`` are the oracle accuracies per checkpoint (row i covers the tasks learned by then);
    the diagonal (each task right after training) counts among the earlier accuracies.
    """
    if not rows:
        return None
    final = rows[-1]
    drops = []
    for j in range(len(final) - 1):
        earlier = [diagonal[j]] + [row[j] for row in rows[:-1] if len(row) > j]
        drops.append(max(earlier) - final[j])
    return mean(drops) if drops else None


def backward_transfer(rows: list[list[float]], diagonal: list[float]) -> float | None:
    """Mean over all tasks but the last of (final accuracy - accuracy right after training)."""
    if not rows:
        return None
    final = rows[-1]
    gaps = [final[j] - diagonal[j] for j in range(len(final) - 1)]
    return mean(gaps) if gaps else None

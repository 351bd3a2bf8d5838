"""Scoring rules and summaries, by hand-computed numbers."""

from __future__ import annotations

import pytest
import torch

from clbench.metrics import backward_transfer, forgetting, score


def batches():
    labels = [torch.tensor([0, 1, 1, 0]), torch.tensor([1, 1])]
    predictions = [torch.tensor([0, 1, 0, 0]), torch.tensor([1, 1])]  # 3/4 and 2/2 right
    return labels, predictions


def test_task_given_accuracy():
    labels, predictions = batches()
    s = score(labels, predictions, task=2)
    assert s.accuracy == pytest.approx(5 / 6) and s.task_inference is None


def test_gnu_wrong_task_scores_zero_and_gns_does_not():
    labels, predictions = batches()
    gnu = score(labels, predictions, 2, inferred=[2, 0], wrong_task_is_wrong=True)
    assert gnu.accuracy == pytest.approx(3 / 6)  # the second batch's task was wrong
    assert gnu.task_inference == pytest.approx(0.5)  # per decision, not per sample
    gns = score(labels, predictions, 2, inferred=[2, 0], wrong_task_is_wrong=False)
    assert gns.accuracy == pytest.approx(5 / 6)


def test_class_incremental_inference_is_per_sample():
    labels = [torch.tensor([4, 5, 4, 5])]  # task 2 of 2 classes
    predictions = [torch.tensor([4, 5, 1, 3])]  # two wrong tasks: labels 1 (task 0), 3 (task 1)
    s = score(labels, predictions, 2, per_task_classes=2)
    assert s.accuracy == pytest.approx(0.5) and s.task_inference == pytest.approx(0.5)


def test_forgetting_and_backward_transfer():
    diagonal = [0.9, 0.8, 0.7]
    rows = [[0.9], [0.95, 0.8], [0.6, 0.7, 0.7]]
    assert forgetting(rows, diagonal) == pytest.approx(((0.95 - 0.6) + (0.8 - 0.7)) / 2)
    assert backward_transfer(rows, diagonal) == pytest.approx(((0.6 - 0.9) + (0.7 - 0.8)) / 2)
    assert forgetting([[0.5]], [0.5]) is None

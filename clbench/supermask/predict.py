"""Answering a checkpoint's evaluation requests with a supermask net (SupSup's and ExSSNeT's
prediction): a given task's requests under its mask; the others' mask inferred per batch from
its first ``infer_batch`` images (One-Shot or Binary, once per objective, all of a checkpoint's
decisions at once), then each batch predicted under its mask, grouped by mask so each mask is
unpacked once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch

from clbench.method import Answer, EvalRequest
from clbench.supermask.inference import ScoreBank, infer_tasks
from clbench.supermask.supernet import SupermaskNet

#: Bounds the inputs of one inference call (masks are unpacked once per call; the inference
#: itself bounds its own working memory).
IMAGES_PER_CALL = 1 << 16


class MaskPredictor:
    """Predictions of ``net`` for the first ``classes`` outputs. ``params``: the method's
    ``objective`` (one, or a list: one answer variant each, named by the objective),
    ``inference`` and ``infer_batch``. NNs:
    masks are ``bank`` rows (its first ``bank_masks()``), and ``oracle(task)`` names the mask a
    given task is answered with (default: the task's own stored mask)."""

    def __init__(self, net: SupermaskNet, classes: int, params: dict[str, Any], *,
                 bank: ScoreBank | None = None, bank_masks: Callable[[], int] | None = None,
                 oracle: Callable[[int], int] | None = None) -> None:
        self.net, self.classes, self.params = net, classes, params
        self.bank, self.bank_masks = bank, bank_masks
        self.oracle = oracle or (lambda task: task)

    def use(self, mask: int) -> None:
        """Forward with ``mask`` (a bank row in NNs, else a stored mask)."""
        if self.bank is not None:
            self.bank.select(mask)
        else:
            self.net.use_task(mask)

    def labels(self, x: Any) -> Any:
        """The predicted label of every image of ``x`` under the current mask."""
        return self.net(x)[:, : self.classes].argmax(1)

    def predict(self, requests: list[EvalRequest]) -> list[Answer]:
        """One answer per request, in order."""
        self.net.eval()
        answers: dict[int, Answer] = {}
        with torch.no_grad():
            for i, r in enumerate(requests):
                if r.task is not None:
                    self.use(self.oracle(r.task))
                    answers[i] = Answer([self.labels(x) for x in r.batches])
        inferring = [i for i, r in enumerate(requests) if r.task is None]
        if inferring:
            inferred = self._infer_and_predict([requests[i] for i in inferring])
            answers.update(zip(inferring, inferred, strict=True))
        return [answers[i] for i in range(len(requests))]

    def _infer_and_predict(self, requests: list[EvalRequest]) -> list[Answer]:
        p = self.params
        heads = [h for r in requests for h in r.batches.heads(p["infer_batch"])]
        where = [(i, b) for i, r in enumerate(requests) for b in range(len(r.batches))]
        count = None if self.bank_masks is None else self.bank_masks()
        single = isinstance(p["objective"], str)
        objectives = [p["objective"]] if single else list(p["objective"])
        variants: dict[str, list[int]] = {}
        for objective in objectives:
            chosen: list[int] = []
            for part in _chunks(heads):
                chosen += infer_tasks(
                    self.net, torch.cat(part), [len(h) for h in part], method=p["inference"],
                    objective=objective, real_classes=self.classes, source=self.bank,
                    num_masks=count,
                ).tolist()
            variants[objective] = chosen
        by_mask: dict[int, set[tuple[int, int]]] = {}
        for chosen in variants.values():
            for mask, spot in zip(chosen, where, strict=True):
                by_mask.setdefault(mask, set()).add(spot)
        predictions: dict[tuple[int, int, int], Any] = {}
        with torch.no_grad():
            for mask in sorted(by_mask):
                self.use(mask)
                for i, b in sorted(by_mask[mask]):
                    predictions[(mask, i, b)] = self.labels(requests[i].batches[b])
        out = []
        first_row = 0
        for i, r in enumerate(requests):
            rows = range(first_row, first_row + len(r.batches))
            first_row += len(r.batches)
            per_variant = {
                objective: Answer([predictions[(chosen[n], i, where[n][1])] for n in rows],
                                  [chosen[n] for n in rows])
                for objective, chosen in variants.items()
            }
            first = per_variant[objectives[0]]
            out.append(Answer(first.predictions, first.tasks, None if single else per_variant))
        return out


def _chunks(heads: list[Any]) -> Iterator[list[Any]]:
    """Consecutive groups of decisions of at most :data:`IMAGES_PER_CALL` images."""
    part: list[Any] = []
    images = 0
    for h in heads:
        if part and images + len(h) > IMAGES_PER_CALL:
            yield part
            part, images = [], 0
        part.append(h)
        images += len(h)
    if part:
        yield part

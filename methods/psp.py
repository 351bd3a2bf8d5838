"""PSP: Superposition of many models into one (Cheung et al. 2019), as SupSup runs it
(``PSPRotation``; GG only, fully connected models only).

Every layer computes y = W (C_t x), bias-free: C_t a fixed random orthogonal in×in context
per task and layer, never trained, drawn (Haar, QR of a Gaussian with the signs of R's
diagonal) from a generator seeded by (run seed, "psp-context", task, layer), so the contexts
are a function of the seed. W starts xavier-normal and is trained on every task with RMSprop
1e-4, no weight decay (the reference's ``train_weight_tasks=-1``). Output 10.

Bytes: ``seed`` = 4·|W| + 8 (contexts re-drawn from the run seed); ``floats`` = 4·|W| +
4·k·Σ_layers in² (contexts stored: 784² + 300² + 100² floats ≈ 2.86 MB per task for LeNet).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from clbench.method import Answer, Bytes, EvalRequest, Method, Preset
from clbench.params import Param
from clbench.protocols import MNIST_PAPER
from clbench.registry import register_method


def random_orthogonal(n: int, generator: Any) -> Any:
    """A Haar-random orthogonal n×n matrix from ``generator`` (CPU, float32)."""
    import torch

    a = torch.randn(n, n, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(a)
    return (q * torch.sign(torch.diagonal(r))).float()


@register_method
class PSP(Method):
    name = "psp"
    description = "PSP: a fixed random orthogonal context per task and layer; shared weights " \
                  "trained on every task"
    scenarios = frozenset({"gg"})
    models = ("lenet", "fc1024")
    independent_requests = True  # the given task's context per batch
    params = (
        Param("optimizer", str, "rmsprop", "optimizer of W", choices=("rmsprop", "adam", "sgd")),
        Param("lr", float, 1e-4, "learning rate of W (--lr)", low=0.0),
        Param("momentum", float, 0.9, "SGD momentum", low=0.0, high=1.0),
        Param("weight_decay", float, 0.0, "weight decay (RMSprop gets none in the reference)",
              low=0.0),
    )
    presets = (Preset({"scenario": "gg"}, MNIST_PAPER, {},
                      "Fig. 3: PermutedMNIST, LeNet, RMSprop 1e-4, 1000 batches of 128"),)
    bytes_rules = {"seed": "4*|W| + 8 (contexts from the run seed)",
                   "floats": "4*|W| + 4*k*sum(in^2) (contexts stored as fp32)"}
    cached_tasks = 16  # contexts kept in memory (LeNet: 2.9 MB per task); others re-drawn

    def __init__(self, ctx: Any) -> None:
        super().__init__(ctx)
        from math import prod

        import torch
        from torch import nn

        from clbench.models import HIDDEN

        sizes = (prod(ctx.props.input_shape), *HIDDEN[ctx.config.model],
                 ctx.props.classes_per_task)
        generator = ctx.generator("model")
        self.weights = nn.ParameterList()
        for a, b in zip(sizes, sizes[1:]):
            w = torch.empty(b, a)
            nn.init.xavier_normal_(w, generator=generator)
            self.weights.append(nn.Parameter(w))
        self.weights.to(ctx.device)
        self.tasks = 0
        self._contexts: OrderedDict[int, list[Any]] = OrderedDict()

    def contexts(self, task: int) -> list[Any]:
        """Task ``task``'s contexts, one per layer (re-drawn from the seed when not cached)."""
        if task in self._contexts:
            self._contexts.move_to_end(task)
            return self._contexts[task]
        made = [random_orthogonal(w.shape[1], self.ctx.generator("psp-context", task, i))
                .to(self.ctx.device) for i, w in enumerate(self.weights)]
        self._contexts[task] = made
        if len(self._contexts) > self.cached_tasks:
            self._contexts.popitem(last=False)
        return made

    def forward(self, x: Any, task: int) -> Any:
        h = x.flatten(1)
        for i, (w, c) in enumerate(zip(self.weights, self.contexts(task))):
            h = (h @ c.T) @ w.T
            if i < len(self.weights) - 1:
                h = h.relu()
        return h

    def train_experience(self, experience: Any) -> None:
        from clbench.training import epochs, fit, make_optimizer

        index = experience.task_label
        optimizer = make_optimizer(list(self.weights), self.ctx.params)  # a fresh one per task
        for batches in epochs(self.ctx, index, reshuffle=False):
            fit(lambda x: self.forward(x, index), optimizer, batches)
        self.tasks += 1

    def state_dict(self) -> dict[str, Any]:
        return {"tasks": self.tasks, "weights": [w.detach() for w in self.weights]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        import torch

        with torch.no_grad():
            for w, saved in zip(self.weights, state["weights"], strict=True):
                w.copy_(saved)
        self.tasks = state["tasks"]

    def predict(self, requests: list[EvalRequest]) -> list[Answer]:
        import torch

        with torch.no_grad():
            return [Answer([self.forward(x, r.task).argmax(1) for x in r.batches])
                    for r in requests]

    def bytes(self) -> dict[str, Bytes]:
        weights = 4 * sum(w.numel() for w in self.weights)
        contexts = 4 * self.tasks * sum(w.shape[1] ** 2 for w in self.weights)
        return {"seed": Bytes(weights + 8, "psp-seed-v1"),
                "floats": Bytes(weights + contexts, "psp-floats-v1")}

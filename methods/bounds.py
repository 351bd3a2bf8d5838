"""Reference points of the paper's comparisons (GG only): Upper Bound, Lower Bound, Separate
Heads and Separate Heads-RandW, on bias-free plain models as the SupSup reference builds them.

* ``upper-bound``: a separate network per task, each trained from scratch on its task only
  (independent networks: nothing is shared or forgotten). ``warm_start`` gives the reference's
  variant (``rn18-upperbound.yaml``): one network fine-tuned task after task, starting each
  task from the previous task's network, with a snapshot kept per task and used for its task.
* ``lower-bound``: one trunk trained continually on every task, one head per task [P].
* ``separate-heads``: trunk and head trained on task 0 (``weight_lr``), later tasks only their
  head (``lr``); heads are copies of one initial head (``IndividualHeads``).
* ``separate-heads-randw``: the trunk is random and never trained; heads trained with ``lr``.

Heads methods on ``gemresnet18`` keep per-task BatchNorm statistics (``MultitaskNonAffineBN``);
the upper bound uses shared affine BatchNorm per network (``StandardBN``). Defaults: on MNIST
models, SupSup's MNIST protocol (RMSprop 1e-4 for every trained tensor, no weight decay); on
``gemresnet18`` the SplitCIFAR100 configs (Adam, trunk 1e-3, heads 1e-2, weight decay 1e-4).

Bytes ``fp32`` (P = one network's parameters, C = BatchNorm channels, k = tasks learned):
upper bound 4·k·(P + 2·C_shared); heads 4·(P_trunk + k·P_head) + 8·k·C (per-task statistics);
Separate Heads-RandW also ``seed`` = 8 + 4·k·P_head + 8·k·C.
"""

from __future__ import annotations

import copy
from typing import Any

from clbench.method import Answer, Bytes, EvalRequest, Method, Preset
from clbench.params import Param
from clbench.protocols import CIFAR100_PAPER, MNIST_PAPER
from clbench.registry import register_method

MNIST_OPT = {"optimizer": "rmsprop", "lr": 1e-4, "weight_lr": 1e-4, "weight_decay": 0.0}
CIFAR_OPT = {"optimizer": "adam", "lr": 1e-2, "weight_lr": 1e-3, "weight_decay": 1e-4}
COMMON = (
    Param("optimizer", str, "rmsprop", "optimizer", choices=("rmsprop", "adam", "sgd")),
    Param("lr", float, 1e-4, "learning rate of the heads (--lr)", low=0.0),
    Param("weight_lr", float, 1e-4, "learning rate of the trunk where it trains", low=0.0),
    Param("momentum", float, 0.9, "SGD momentum", low=0.0, high=1.0),
    Param("weight_decay", float, 0.0, "weight decay", low=0.0),
)
PRESETS = (
    Preset({"scenario": "gg"}, MNIST_PAPER, MNIST_OPT,
           "SupSup's PermutedMNIST protocol: LeNet, RMSprop 1e-4, 1000 batches of 128"),
    Preset({"model": "gemresnet18"}, {}, CIFAR_OPT,
           "SplitCIFAR100 configs: Adam, trunk 1e-3, heads 1e-2, weight decay 1e-4"),
    Preset({"preset": "paper", "dataset": "cifar100"}, CIFAR100_PAPER, CIFAR_OPT,
           "Fig. 2 right: SplitCIFAR100, 250 epochs"),
)


def _network(ctx: Any, norm: str) -> Any:
    from math import prod

    from clbench.models import build_mlp
    from clbench.supermask.nets import build_gemresnet18

    outputs = ctx.props.classes_per_task
    if ctx.config.model == "gemresnet18":
        return build_gemresnet18(outputs, norm=norm, generator=ctx.generator("model"))
    return build_mlp(ctx.config.model, prod(ctx.props.input_shape), outputs,
                     ctx.generator("model"), bias=False)


def _split(net: Any) -> tuple[Any, Any]:
    """(trunk, head): the ResNet's features and head, or the MLP without its last layer."""
    if hasattr(net, "features"):
        return net, net.head
    return net[:-1], net[-1]


def _fit(ctx: Any, index: int, forward: Any, groups: list[tuple[list[Any], float]]) -> None:
    """Train on task ``index``: one optimizer with a learning rate per parameter group."""
    from clbench.training import epochs, fit, make_optimizer

    groups = [{"params": params, "lr": lr} for params, lr in groups if params]
    optimizer = make_optimizer(groups, {**ctx.params, "lr": groups[0]["lr"]})
    for batches in epochs(ctx, index, reshuffle=False):
        fit(forward, optimizer, batches)


def _count(module: Any) -> int:
    return sum(p.numel() for p in module.parameters())


@register_method
class UpperBound(Method):
    """A separate network per task trained from scratch: independent networks (``warm_start``:
    the reference's sequential fine-tuning with a snapshot per task)."""

    name = "upper-bound"
    description = "Upper Bound: a separate network per task (independent; warm_start " \
                  "fine-tunes from the previous task's)"
    independent_requests = True  # the given task's network per batch
    scenarios = frozenset({"gg"})
    models = ("lenet", "fc1024", "gemresnet18")
    params = (Param("warm_start", bool, False, "start each task from the previous task's "
                    "network (rn18-upperbound.yaml), keeping a snapshot per task"),) + COMMON
    presets = PRESETS
    primary_lr = "weight_lr"
    bytes_rules = {"fp32": "4*k*(P + 2*C_bn) (one network per task)"}

    def __init__(self, ctx: Any) -> None:
        super().__init__(ctx)
        self.nets: list[Any] = []

    def train_experience(self, experience: Any) -> None:
        index = experience.task_label
        if self.ctx.params["warm_start"] and self.nets:
            net = copy.deepcopy(self.nets[-1])
        else:
            net = _network(self.ctx, "shared")
            if index:  # independent draws per task (task 0 keeps the run's model draw)
                fresh = self.ctx.generator("model", index)
                net = _redraw(net, fresh)
        net.to(self.ctx.device).train()
        _fit(self.ctx, index, net, [(list(net.parameters()), self.ctx.params["weight_lr"])])
        self.nets.append(net.eval())

    def state_dict(self) -> dict[str, Any]:
        return {"nets": [net.state_dict() for net in self.nets]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for saved in state["nets"]:
            net = _network(self.ctx, "shared")
            net.load_state_dict(saved)
            self.nets.append(net.to(self.ctx.device).eval())

    def predict(self, requests: list[EvalRequest]) -> list[Answer]:
        import torch

        with torch.no_grad():
            return [Answer([self.nets[r.task](x).argmax(1) for x in r.batches])
                    for r in requests]

    def bytes(self) -> dict[str, Bytes]:
        from clbench.supermask.layers import bn_statistics

        per = sum(_count(n) + bn_statistics(n, per_task=False) for n in self.nets)
        return {"fp32": Bytes(4 * per, "upper-bound-v1")}


def _redraw(net: Any, generator: Any) -> Any:
    """Re-draw every weight of ``net`` from ``generator`` (PyTorch's default init)."""
    import torch

    with torch.no_grad():
        for p in net.parameters():
            if p.dim() > 1:
                bound = 1 / p[0].numel() ** 0.5
                p.uniform_(-bound, bound, generator=generator)
    return net


class _Heads(Method):
    """A trunk and one head per task; ``trunk_tasks``: tasks on which the trunk trains
    (-1 every task, 1 the first only, 0 never)."""

    trunk_tasks = -1
    independent_requests = True  # the given task's head per batch
    scenarios = frozenset({"gg"})
    models = ("lenet", "fc1024", "gemresnet18")
    params = COMMON
    presets = PRESETS
    bytes_rules = {"fp32": "4*(P_trunk + k*P_head) + 8*k*C_bn (per-task BN statistics)"}

    def __init__(self, ctx: Any) -> None:
        super().__init__(ctx)
        self.net = _network(ctx, "task").to(ctx.device)
        self.trunk, head = _split(self.net)
        self.initial_head = copy.deepcopy(head)
        self.heads: list[Any] = []
        self.resnet = hasattr(self.net, "features")

    def _features(self, x: Any) -> Any:
        return self.net.features(x) if self.resnet else self.trunk(x)

    def _trunk_params(self) -> list[Any]:
        head = set(map(id, self.initial_head.parameters())) | {
            id(p) for h in self.heads for p in h.parameters()}
        own_head = self.net.head if self.resnet else self.net[-1]
        skip = head | {id(p) for p in own_head.parameters()}
        return [p for p in self.net.parameters() if id(p) not in skip]

    def train_experience(self, experience: Any) -> None:
        from clbench.supermask.layers import add_task, set_task

        index, p = experience.task_label, self.ctx.params
        add_task(self.net)
        set_task(self.net, index)
        head = copy.deepcopy(self.initial_head).to(self.ctx.device)
        self.heads.append(head)
        trains = self.trunk_tasks < 0 or index < self.trunk_tasks
        trunk = self._trunk_params()
        for t in trunk:
            t.requires_grad_(trains)
        self.net.train()
        groups = [(list(head.parameters()), p["weight_lr"] if trains else p["lr"])]
        if trains:
            groups.append((trunk, p["weight_lr"]))
        _fit(self.ctx, index, lambda x: head(self._features(x)), groups)
        self.net.eval()

    def state_dict(self) -> dict[str, Any]:
        return {"net": self.net.state_dict(), "heads": [h.state_dict() for h in self.heads]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        from clbench.supermask.layers import add_task

        for saved in state["heads"]:
            add_task(self.net)
            head = copy.deepcopy(self.initial_head).to(self.ctx.device)
            head.load_state_dict(saved)
            self.heads.append(head)
        self.net.load_state_dict(state["net"])
        self.net.eval()

    def predict(self, requests: list[EvalRequest]) -> list[Answer]:
        import torch

        from clbench.supermask.layers import set_task

        answers = []
        with torch.no_grad():
            for r in requests:
                set_task(self.net, r.task)
                head = self.heads[r.task]
                answers.append(Answer([head(self._features(x)).argmax(1) for x in r.batches]))
        return answers

    def bytes(self) -> dict[str, Bytes]:
        from clbench.supermask.layers import bn_statistics

        k = len(self.heads)
        heads = 4 * k * _count(self.initial_head)
        bn = 4 * k * bn_statistics(self.net, per_task=True)
        trunk = 4 * sum(t.numel() for t in self._trunk_params())
        out = {"fp32": Bytes(trunk + heads + bn, "heads-fp32-v1")}
        if self.trunk_tasks == 0:
            out["seed"] = Bytes(8 + heads + bn, "heads-seed-v1")
        return out


@register_method
class LowerBound(_Heads):
    name = "lower-bound"
    description = "Lower Bound: a shared trunk trained continually, a head per task"
    trunk_tasks = -1
    primary_lr = "weight_lr"


@register_method
class SeparateHeads(_Heads):
    name = "separate-heads"
    description = "Separate Heads: trunk trained on task 0 only, then a new head per task"
    trunk_tasks = 1


@register_method
class SeparateHeadsRandW(_Heads):
    name = "separate-heads-randw"
    description = "Separate Heads-RandW: a random trunk never trained, a head per task"
    trunk_tasks = 0
    bytes_rules = {**_Heads.bytes_rules, "seed": "8 + 4*k*P_head + 8*k*C_bn (trunk from seed)"}

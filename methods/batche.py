"""BatchE (BatchEnsemble, Wen et al. 2020) as SupSup runs it (``VectorizedBatchEnsembles``).

Every layer computes y = s_t ⊙ (W (r_t ⊙ x)), bias-free: W shared, r_t (input channels) and
s_t (output channels) per task, initialised to random ±1. GG (the paper's runs): W, r_0, s_0
are trained on task 0 with ``weight_lr`` (Adam 1e-4); from task 1 on W is frozen and only r_t,
s_t train with ``lr`` (Adam 1e-2), weight decay 1e-4 (the reference's default, which Adam
receives). ``random_w``: W is never trained (BatchE-RandW of SplitCIFAR100: default init,
Adam 0.1 on r, s; per-task BatchNorm statistics in ``gemresnet18``). Otherwise W starts
kaiming-normal (fan_in, ReLU), as the MNIST scripts set.

GNs/GNu (Fig. 5 right, MLPs only): One-Shot task inference over the superposed members,
W ⊙ Σ_i α_i s_i r_iᵀ, i.e. y = Σ_i α_i s_i ⊙ W(r_i ⊙ x) per layer, α = 1/k; one gradient of
the objective (``H`` entropy over all outputs, ``G`` logsumexp through the superfluous outputs)
w.r.t. α from the first ``infer_batch`` images of a test batch, and the argmin decides the
batch. (The reference softmaxes α; at uniform α that shifts and scales the gradient, so the
argmin is the same.)

Bytes: ``fp32`` = 4·|W| + 4·k·Σ_layers(in + out) + 8·k·C_bn (per-task BN mean and var);
with ``random_w`` also ``seed`` = 8 + 4·k·Σ(in + out) + 8·k·C_bn (W re-drawn from the seed).
"""

from __future__ import annotations

from typing import Any

from clbench.method import Answer, Bytes, EvalRequest, Method, Preset
from clbench.params import Param
from clbench.protocols import CIFAR100_PAPER, MNIST_PAPER
from clbench.registry import register_method
from clbench.supermask.rules import OBJECTIVES, check_outputs, refuse_per_task_bn


def _rank_one() -> type:
    import torch
    import torch.nn.functional as F
    from torch import nn

    class RankOne(nn.Module):
        """y = s_t ⊙ (W (r_t ⊙ x)) for a linear (``kernel`` 0) or conv layer; ``task`` picks
        the member, ``alphas`` [D, k] (with inputs [D, b, in]) superposes the first k."""

        def __init__(self, c_in: int, c_out: int, kernel: int = 0, stride: int = 1) -> None:
            super().__init__()
            shape = (c_out, c_in, kernel, kernel) if kernel else (c_out, c_in)
            self.weight = nn.Parameter(torch.empty(shape))
            self.stride, self.padding = stride, kernel // 2
            self.r, self.s = nn.ParameterList(), nn.ParameterList()
            self.task = 0
            self.alphas: torch.Tensor | None = None

        def add_member(self, generator: torch.Generator) -> None:
            c_out, c_in = self.weight.shape[:2]
            for vectors, n in ((self.r, c_in), (self.s, c_out)):
                signs = torch.randint(0, 2, (n,), generator=generator).float() * 2 - 1
                vectors.append(nn.Parameter(signs.to(self.weight.device)))

        def _linear(self, x: torch.Tensor) -> torch.Tensor:
            if self.weight.dim() == 2:
                return F.linear(x, self.weight)
            return F.conv2d(x, self.weight, None, self.stride, self.padding)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if self.alphas is None:
                view = (-1, 1, 1) if self.weight.dim() == 4 else (-1,)
                r, s = self.r[self.task].view(view), self.s[self.task].view(view)
                return self._linear(x * r) * s
            k = self.alphas.shape[1]
            r = torch.stack(list(self.r[:k]))  # [k, in]
            s = torch.stack(list(self.s[:k]))  # [k, out]
            h = self._linear(x.unsqueeze(2) * r) * s  # [D, b, k, out]
            return (h * self.alphas[:, None, :, None]).sum(2)

    return RankOne


@register_method
class BatchE(Method):
    name = "batche"
    description = "BatchE: shared W trained on task 0, then per-task rank-one vectors (s, r); " \
                  "One-Shot task inference over the members in GNs/GNu"
    scenarios = frozenset({"gg", "gns", "gnu"})
    models = ("lenet", "fc1024", "gemresnet18")
    infers_task = True
    independent_requests = True  # One-Shot per decision; the chunk never mixes a decision
    variants_param = "objective"
    params = (
        Param("random_w", bool, False, "W never trained (BatchE-RandW); else trained on task 0"),
        Param("optimizer", str, "adam", "optimizer", choices=("adam", "rmsprop", "sgd")),
        Param("lr", float, 1e-2, "learning rate of r, s (--lr)", low=0.0),
        Param("weight_lr", float, 1e-4, "learning rate of W, r_0, s_0 on task 0", low=0.0),
        Param("momentum", float, 0.9, "SGD momentum", low=0.0, high=1.0),
        Param("weight_decay", float, 1e-4, "weight decay (Adam's L2)", low=0.0),
        Param("output_size", int, 0, "output neurons (0: classes per task)", low=0),
        Param("objective", str, ("H",), "task-inference objective(s) in GNs/GNu",
              choices=OBJECTIVES, multiple=True),
        Param("infer_batch", int, 1, "images of each test batch that decide its task", low=1),
    )
    presets = (
        Preset({"scenario": "gg"}, MNIST_PAPER, {},
               "Fig. 3: PermutedMNIST, LeNet, Adam 1e-4 on task 0 then 1e-2, output 10"),
        Preset({"scenario": "gns"}, {**MNIST_PAPER, "model": "fc1024"}, {"output_size": 500},
               "as GNu"),
        Preset({"scenario": "gnu"}, {**MNIST_PAPER, "model": "fc1024"}, {"output_size": 500},
               "Fig. 5 right: FC-1024, output 500, One-Shot (H) with one image"),
        Preset({"model": "gemresnet18"}, {}, {"random_w": True, "lr": 0.1},
               "BatchE-RandW (rn18-batche-randw.yaml): W never trained, Adam 0.1"),
        Preset({"preset": "paper", "dataset": "cifar100"},
               CIFAR100_PAPER, {"random_w": True, "lr": 0.1},
               "Fig. 2 right: SplitCIFAR100 BatchE-RandW, 250 epochs"),
    )
    bytes_rules = {
        "fp32": "4*|W| + 4*k*sum(in+out) + 8*k*C_bn (W, rank-one vectors, per-task BN stats)",
        "seed": "random_w only: 8 + 4*k*sum(in+out) + 8*k*C_bn",
    }

    @classmethod
    def check(cls, options: dict[str, Any], params: dict[str, Any], props: Any) -> None:
        scenario = options["scenario"]
        refuse_per_task_bn(scenario, options["model"], cls.models)
        check_outputs(params, props, () if scenario == "gg" else params["objective"])

    def __init__(self, ctx: Any) -> None:
        super().__init__(ctx)
        import torch
        from torch import nn

        from clbench.models import HIDDEN
        from clbench.supermask.nets import build_gemresnet18

        rank_one = _rank_one()
        self.classes = ctx.props.classes_per_task
        outputs = ctx.params["output_size"] or self.classes
        if ctx.config.model == "gemresnet18":
            self.net = build_gemresnet18(
                outputs, norm="task", conv=lambda a, b, k, s: rank_one(a, b, k, s),
                head=lambda a, b: rank_one(a, b))
        else:
            from math import prod

            sizes = (prod(ctx.props.input_shape), *HIDDEN[ctx.config.model], outputs)
            self.net = nn.ModuleList(rank_one(a, b) for a, b in zip(sizes, sizes[1:]))
        self.layers = [m for m in self.net.modules() if isinstance(m, rank_one)]
        generator = ctx.generator("model")
        with torch.no_grad():
            for layer in self.layers:
                w = torch.empty(layer.weight.shape)
                if ctx.params["random_w"]:  # PyTorch's default init (conv_init: default)
                    bound = 1 / w[0].numel() ** 0.5
                    w.uniform_(-bound, bound, generator=generator)
                else:
                    nn.init.kaiming_normal_(w, nonlinearity="relu", generator=generator)
                layer.weight.copy_(w)
        self.net.to(ctx.device)
        self.mlp = ctx.config.model != "gemresnet18"
        self.tasks = 0

    def _forward(self, x: Any) -> Any:
        if not self.mlp:
            return self.net(x)
        h = x.flatten(1) if x.dim() == 4 else x  # [B, in], or [D, b, in] when superposing
        for i, layer in enumerate(self.net):
            h = layer(h)
            if i < len(self.net) - 1:
                h = h.relu()
        return h

    def _use(self, task: int) -> None:
        from clbench.supermask.layers import set_task

        for layer in self.layers:
            layer.task, layer.alphas = task, None
        set_task(self.net, task)

    def train_experience(self, experience: Any) -> None:
        from clbench.supermask.layers import add_task
        from clbench.training import epochs, fit, make_optimizer

        index, p = experience.task_label, self.ctx.params
        generator = self.ctx.generator("members", index)
        for layer in self.layers:
            layer.add_member(generator)
        add_task(self.net)
        self._use(index)
        members = [v for layer in self.layers for v in (layer.r[index], layer.s[index])]
        train_w = index == 0 and not p["random_w"]
        for layer in self.layers:
            layer.weight.requires_grad_(train_w)
        params = members + ([layer.weight for layer in self.layers] if train_w else [])
        optimizer = make_optimizer(params, {**p, "lr": p["weight_lr"] if train_w else p["lr"]})
        self.net.train()
        for batches in epochs(self.ctx, index, reshuffle=False):
            fit(self._forward, optimizer, batches)
        for v in members:
            v.requires_grad_(False)
        self.net.eval()
        self.tasks += 1

    def state_dict(self) -> dict[str, Any]:
        return {"tasks": self.tasks, "net": self.net.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        from clbench.supermask.layers import add_task

        for index in range(state["tasks"]):  # the members' shapes, then their trained values
            generator = self.ctx.generator("members", index)
            for layer in self.layers:
                layer.add_member(generator)
            add_task(self.net)
        self.net.load_state_dict(state["net"])
        for layer in self.layers:
            for v in (*layer.r, *layer.s):
                v.requires_grad_(False)
        self.tasks = state["tasks"]
        self.net.eval()

    def predict(self, requests: list[EvalRequest]) -> list[Answer]:
        import torch

        self.net.eval()
        answers: list[Answer | None] = [None] * len(requests)
        with torch.no_grad():
            for i, r in enumerate(requests):
                if r.task is not None:
                    self._use(r.task)
                    answers[i] = Answer([self._predict(x) for x in r.batches])
        inferring = [i for i, r in enumerate(requests) if r.task is None]
        if inferring:
            for i, answer in zip(inferring, self._infer([requests[i] for i in inferring])):
                answers[i] = answer
        return answers  # type: ignore[return-value]

    def _predict(self, x: Any) -> Any:
        return self._forward(x)[:, : self.classes].argmax(1)

    def infer_tasks(self, heads: list[Any], objective: str, chunk: int = 256) -> list[int]:
        """One-Shot: the argmin over members of ∂objective/∂α at α = 1/k, per decision
        (``heads``: each decision's images)."""
        import torch

        from clbench.supermask.objective import decision_objective

        chosen: list[int] = []
        for start in range(0, len(heads), chunk):
            part = heads[start:start + chunk]
            b = max(len(h) for h in part)
            x = torch.stack([torch.cat([h.flatten(1), h.flatten(1)[-1:].expand(b - len(h), -1)])
                             for h in part])  # [D, b, in], short decisions padded (heads are
            # equal-sized but for the last batch; padding repeats an image of the decision)
            alphas = torch.full((len(part), self.tasks), 1 / self.tasks, requires_grad=True,
                                device=x.device)
            for layer in self.layers:
                layer.alphas = alphas
            with torch.enable_grad():
                logits = self._forward(x)
                obj = decision_objective(logits, objective, self.classes).sum()
                (grad,) = torch.autograd.grad(obj, alphas)
            chosen += grad.argmin(1).tolist()
        for layer in self.layers:
            layer.alphas = None
        return chosen

    def _infer(self, requests: list[EvalRequest]) -> list[Answer]:
        import torch

        p = self.ctx.params
        heads = [h for r in requests for h in r.batches.heads(p["infer_batch"])]
        variants = {o: self.infer_tasks(heads, o) for o in p["objective"]}
        cache: dict[tuple[int, int, int], Any] = {}
        out, n = [], 0
        with torch.no_grad():
            for i, r in enumerate(requests):
                per_variant = {}
                for objective, chosen in variants.items():
                    tasks = chosen[n:n + len(r.batches)]
                    predictions = []
                    for b, t in enumerate(tasks):
                        if (t, i, b) not in cache:
                            self._use(t)
                            cache[(t, i, b)] = self._predict(r.batches[b])
                        predictions.append(cache[(t, i, b)])
                    per_variant[objective] = Answer(predictions, tasks)
                n += len(r.batches)
                first = per_variant[p["objective"][0]]
                out.append(Answer(first.predictions, first.tasks, per_variant))
        return out

    def bytes(self) -> dict[str, Bytes]:
        from clbench.supermask.layers import bn_statistics

        k = self.tasks
        vectors = 4 * k * sum(sum(layer.weight.shape[:2]) for layer in self.layers)
        bn = 4 * k * bn_statistics(self.net, per_task=True)
        weights = 4 * sum(layer.weight.numel() for layer in self.layers)
        out = {"fp32": Bytes(weights + vectors + bn, "batche-fp32-v1")}
        if self.ctx.params["random_w"]:
            out["seed"] = Bytes(8 + vectors + bn, "batche-seed-v1")
        return out

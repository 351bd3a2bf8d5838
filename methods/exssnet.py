"""ExSSNeT: Exclusive Supermask SubNetwork Training (Yadav & Bansal, Findings of ACL 2023).

SupSup's fixed random network and top-k masks, plus weight training: each task first learns its
scores (mask phase, the weights frozen), then trains the weights its mask selects and no earlier
mask selects (weight phase, the scores frozen), E_t = M_t ∧ ¬(M_0 ∨ … ∨ M_{t−1}). The forward
pass still uses all of M_t; the gradient of every weight outside E_t is zeroed before each step,
weight decay is 0 in that phase, and a fresh optimizer per phase gives those weights zero moments,
so every earlier task's W ⊙ M_i stays bit-exactly what it was (checked after each phase: the
weights outside E_t must equal their values before it, else the run fails). ``ssnet`` is the
ablation that trains all of M_t, the weights shared with earlier masks included, and forgets.

Steps: the task's ``--iters`` batches (or ``--epochs``) are split between the phases in order,
the first ``mask_share`` for the scores and the rest for the weights (default 500 + 500 of
SupSup's 1,000 batches), so both methods take the same steps on the same batches.
``mask_share=1`` is SupSup with top-k masks, the same numbers as ``supsup mask=topk`` with the
same optimizer. Learning rates: ``lr`` (--lr) in the mask phase, ``weight_lr`` in the weight
phase. The released code runs both phases at its weight rate (reference §1.3): give
``lr = weight_lr`` to reproduce that (both default to 1e-3, its effective rate). No schedulers
(the release steps cosine and a plateau schedule per epoch) and no checkpoint selection: each
task keeps the model at the end of its weight phase. Per-task non-affine BatchNorm statistics
(``gemresnet18``, ``resnet50``) are updated in both phases of their task only.

KKT (``kkt=best``, before the mask phase of every task t ≥ 1): ``kkt_fraction`` of the new
task's training samples (drawn by a generator seeded per task, without augmentation) go
through every earlier task's mask, weights and BN statistics in eval mode without gradients;
the features are the classifier's input (LeNet: the 100 post-ReLU units; the release takes
them before the ReLU). The first 66% of the samples are the k-NN memory (Euclidean, k =
``kkt_k``, majority vote) and the rest its queries; the earlier task with the best accuracy
gives its final float scores to the new task if that accuracy beats chance (1/classes).
KKT therefore keeps every task's float scores: 4·P bytes per task, counted below.

GG as in the paper; for models without per-task BatchNorm the masks still superpose over one
weight tensor, so GNs/GNu infer the task with SupSup's One-Shot/Binary inference (objectives
H, G) over the trained weights. Network, training loop, prediction and byte formulas are
SupSup's parts from the supermask library and :mod:`clbench.training`.

Bytes (P masked weights, k tasks, C_bn per-task BN channels, n weights ever trained = |∪_t
E_t|, the union of the masks when every task has a weight phase):
``bits`` = 8 (seed) + k·⌈P/8⌉ (packed masks) + k·8·C_bn + min(4·P, 8·n) + 4·P·k_s;
``sparse`` = SupSup's CSC masks (8 + Σ_tasks Σ_layers [2·nnz + 4·(cols + 1)] + k·8·C_bn)
+ min(4·P, 8·n) + 4·P·k_s. The trained weights are stored dense (fp32) or as int32 indices
plus fp32 values, whichever is smaller; k_s = k with ``kkt=best`` (float scores) else 0.
"""

from __future__ import annotations

from itertools import islice
from math import ceil, prod
from typing import Any, ClassVar

from clbench.method import Answer, Bytes, EvalRequest, Method, Preset, refuse
from clbench.params import Param
from clbench.protocols import MNIST_PAPER
from clbench.registry import register_method
from clbench.supermask.rules import INFERENCES, OBJECTIVES, check_outputs, refuse_per_task_bn

KNN_MEMORY = 0.66  # the first 66% of KKT's samples are the k-NN memory, the rest its queries


@register_method
class ExSSNeT(Method):
    name = "exssnet"
    description = "ExSSNeT: SupSup top-k masks, then per task train the weights only its " \
                  "mask selects (earlier tasks bit-exactly kept); optional KNN transfer (KKT)"
    scenarios = frozenset({"gg", "gns", "gnu"})
    models = ("lenet", "fc1024", "gemresnet18", "resnet50")
    infers_task = True
    independent_requests = True  # MaskPredictor: a given task's mask, or One-Shot per batch
    uses_density = True
    variants_param = "objective"
    exclusive: ClassVar[bool] = True  # False: SSNeT trains all of M_t
    params = (
        Param("mask_share", float, 0.5, "share of each task's batches (or epochs) for the "
              "mask phase; the rest train the weights (1: SupSup top-k)", low=0.0, high=1.0),
        Param("optimizer", str, "adam", "optimizer of both phases (a fresh one per phase)",
              choices=("rmsprop", "adam", "sgd")),
        Param("lr", float, 1e-3, "learning rate of the scores, mask phase (--lr)", low=0.0),
        Param("weight_lr", float, 1e-3, "learning rate of the weights, weight phase", low=0.0),
        Param("momentum", float, 0.9, "SGD momentum", low=0.0, high=1.0),
        Param("weight_decay", float, 0.0, "weight decay on the scores (the weight phase always "
              "uses 0, which keeps frozen weights exact)", low=0.0),
        Param("kkt", str, "off", "best: start each task from the float scores of the earlier "
              "task whose features k-NN-classify its data best, if above chance",
              choices=("off", "best")),
        Param("kkt_k", int, 200, "KKT: neighbours of the k-NN vote", low=1),
        Param("kkt_fraction", float, 0.2, "KKT: share of the new task's training samples used",
              low=0.0, high=1.0),
        Param("output_size", int, 0, "output neurons (0: classes per task; G needs more)", low=0),
        Param("objective", str, ("H",), "GN task-inference objective(s), as SupSup",
              choices=OBJECTIVES, multiple=True),
        Param("inference", str, "oneshot", "GN: oneshot or binary", choices=INFERENCES),
        Param("infer_batch", int, 1, "GN: images of each test batch that decide its task", low=1),
    )
    presets = tuple(
        Preset({"scenario": s}, {**MNIST_PAPER, "density": 0.1}, {},
               "PermutedMNIST, LeNet, 500 mask + 500 weight batches of 128 per task, density "
               "0.1 (the release's default)")
        for s in ("gg", "gns", "gnu")
    )
    bytes_rules = {
        "bits": "8 (seed) + k*ceil(P/8) (packed masks) + k*8*C_bn + min(4*P, 8*n) (n trained "
                "weights: dense fp32 or int32 index + fp32 value) + 4*P*k with kkt=best",
        "sparse": "SupSup's CSC masks (8 + sum of 2*nnz + 4*(cols+1) + k*8*C_bn) + min(4*P, "
                  "8*n) + 4*P*k with kkt=best",
    }

    @classmethod
    def check(cls, options: dict[str, Any], params: dict[str, Any], props: Any) -> None:
        scenario, model = options["scenario"], options["model"]
        if options.get("density") is None:
            refuse(f"{cls.name} uses top-k masks: give --density (the paper uses 0.02 to 0.1)")
        share = params["mask_share"]
        unit, length = ("--iters", options["iters"]) if options["iters"] else \
            ("--epochs", options["epochs"])
        first = round(length * share)
        if first < 1 or (share < 1 and first >= length):
            refuse(f"mask_share {share} of {unit} {length} leaves a phase empty: give a share "
                   f"with at least one step in each phase, or 1 for masks only")
        refuse_per_task_bn(scenario, model, cls.models)
        check_outputs(params, props, params["objective"])

    # ---------------------------------------------------------------- run time

    def __init__(self, ctx: Any) -> None:
        super().__init__(ctx)
        import torch

        from clbench.supermask.nets import build_model

        self.classes = ctx.props.classes_per_task
        self.net = build_model(
            ctx.config.model, ctx.params["output_size"] or self.classes, ctx.config.seed,
            mask="topk", density=ctx.config.density, in_features=prod(ctx.props.input_shape),
        ).to(ctx.device)
        self.used = torch.zeros(self.net.num_weights, dtype=torch.bool, device=ctx.device)
        self.trained = torch.zeros_like(self.used)  # ∪ of the editable sets so far
        self.score_bank: list[list[Any]] = []  # kkt=best: each task's final float scores
        self.free_fraction: list[float] = []  # |M_t minus earlier masks| / |M_t|
        self.kkt_source: list[int | None] = []
        self.kkt_accuracy: list[list[float]] = []

    def _per_layer(self, flat: Any) -> list[Any]:
        parts = flat.split(self.net.store.layer_sizes)
        return [p.view_as(m.weight) for p, m in zip(parts, self.net.masked_layers, strict=True)]

    def _switch(self) -> tuple[int, int] | None:
        """(epoch, batch) where the weight phase starts; None with mask_share=1 (no phase)."""
        c, share = self.ctx.config, self.ctx.params["mask_share"]
        if share >= 1:
            return None
        return (round(c.epochs * share), 0) if c.epochs else (0, round(c.iters * share))

    def train_experience(self, experience: Any) -> None:
        from clbench.training import epochs, fit, make_optimizer

        index = experience.task_label  # the task view: the given task id
        net = self.net
        if index != net.num_tasks:
            raise RuntimeError(f"{self.name} learns tasks in order: got task {index}, expected "
                               f"{net.num_tasks}")
        net.train()
        net.new_task(self.ctx.generator("scores", index))
        self.kkt_source.append(None)
        self.kkt_accuracy.append([])
        if self.ctx.params["kkt"] == "best" and index > 0:
            self._transfer(index)
        optimizer = make_optimizer(net.score_parameters(), self.ctx.params)
        phase = None  # the weight phase's (optimizer, editable masks, weights before it)
        switch = self._switch()
        for epoch, loader in enumerate(epochs(self.ctx, index)):
            batches = iter(loader)
            if phase is None and switch is not None and epoch == switch[0]:
                fit(net, optimizer, islice(batches, switch[1]))  # the mask phase's last batches
                phase = self._start_weights()
                optimizer = phase[0]
            fit(net, optimizer, batches,
                after_backward=None if phase is None else self._gradient_mask(phase[1]))
        if phase is not None:
            self._end_weights(phase[1], phase[2])
        mask = net.current_mask()
        self.free_fraction.append(round(float((mask & ~self.used).sum() / mask.sum()), 6))
        if self.ctx.params["kkt"] == "best":
            self.score_bank.append([s.detach().clone() for s in net.score_parameters()])
        net.commit_task()  # a new store version: no W ⊙ M cached from before the weight phase
        self.used |= mask
        net.eval()

    def _gradient_mask(self, editable: list[Any]) -> Any:
        """The after-backward hook of the weight phase: zero every gradient outside E_t."""
        layers = self.net.masked_layers

        def mask_gradients() -> None:
            for layer, e in zip(layers, editable, strict=True):
                layer.weight.grad.mul_(e)

        return mask_gradients

    def _start_weights(self) -> tuple[Any, list[Any], list[Any]]:
        """Freeze the scores, open the editable set E_t, return the weight optimizer."""
        from clbench.training import make_optimizer

        net = self.net
        for s in net.score_parameters():
            s.requires_grad_(False)
        mask = net.current_mask()
        editable = mask & ~self.used if self.exclusive else mask
        self.trained |= editable
        weights = [m.weight for m in net.masked_layers]
        before = [w.detach().clone() for w in weights]
        for w in weights:
            w.requires_grad_(True)
        settings = {**self.ctx.params, "lr": self.ctx.params["weight_lr"], "weight_decay": 0.0}
        optimizer = make_optimizer(weights, settings)
        masks = [e.to(weights[0].dtype) for e in self._per_layer(editable)]
        return optimizer, masks, before

    def _end_weights(self, editable: list[Any], before: list[Any]) -> None:
        """Freeze the weights again; fail if any weight outside E_t moved."""
        for layer, e, old in zip(self.net.masked_layers, editable, before, strict=True):
            w = layer.weight
            w.requires_grad_(False)
            w.grad = None
            frozen = e == 0
            if not w[frozen].equal(old[frozen]):
                raise RuntimeError(f"{self.name}: a weight outside the editable set moved")

    def editable_set(self, task: int) -> Any:
        """E_task (flat bool [P]) re-derived from the stored masks: M_task minus the union of
        the earlier ones (``ssnet``: M_task)."""
        store = self.net.store
        mask = store.mask(task)
        if not self.exclusive:
            return mask
        for i in range(task):
            mask = mask & ~store.mask(i)
        return mask

    def predict(self, requests: list[EvalRequest]) -> list[Answer]:
        from clbench.supermask.predict import MaskPredictor

        return MaskPredictor(self.net, self.classes, self.ctx.params).predict(requests)

    # ---------------------------------------------------------------- KKT

    def _transfer(self, index: int) -> None:
        """KKT: copy the best earlier task's float scores into the new task's, if above chance."""
        import torch

        p, net = self.ctx.params, self.net
        data = self.ctx.task_data(index, "train")
        n = max(2, ceil(p["kkt_fraction"] * len(data)))
        picked = torch.randperm(len(data), generator=self.ctx.generator("kkt", index))[:n]
        chunks = [data.batch(part) for part in picked.split(1024)]
        accuracy = kkt_accuracies(net, chunks, index, p["kkt_k"])
        net.use_scores()
        net.train()
        best = max(range(index), key=lambda i: accuracy[i])
        self.kkt_accuracy[-1] = [round(a, 6) for a in accuracy]
        if accuracy[best] > 1.0 / self.classes:
            with torch.no_grad():
                for s, old in zip(net.score_parameters(), self.score_bank[best], strict=True):
                    s.copy_(old)
            self.kkt_source[-1] = best

    # ---------------------------------------------------------------- accounting

    def _weights_bytes(self) -> int:
        n = int(self.trained.sum())
        return min(4 * self.net.num_weights, 8 * n) + 4 * self.net.num_weights * len(
            self.score_bank)

    def bytes(self) -> dict[str, Bytes]:
        from clbench.supermask.sizes import bits_bytes, sparse_bytes

        extra = self._weights_bytes()
        return {"bits": Bytes(bits_bytes(self.net) + extra, "exssnet-bits-v1"),
                "sparse": Bytes(sparse_bytes(self.net) + extra, "exssnet-csc16-v1")}

    def extras(self) -> dict[str, Any]:
        """``overall_density``, ``layer_densities``; per task ``mask_density`` (kept share of
        all weights), ``free_fraction`` (share of its mask outside every earlier mask: the
        exclusive set E_t for exssnet), ``kkt_source`` (earlier task whose scores it started
        from, or null) and ``kkt_accuracy`` (k-NN accuracy per earlier task); ``trained_weights``
        (n, weights ever in an editable set)."""
        from clbench.supermask.sizes import mask_stats

        return {
            **mask_stats(self.net),
            "free_fraction": self.free_fraction,
            "kkt_source": self.kkt_source,
            "kkt_accuracy": self.kkt_accuracy,
            "trained_weights": int(self.trained.sum()),
        }

    # ---------------------------------------------------------------- checkpoints

    def state_dict(self) -> dict[str, Any]:
        layers = self.net.masked_layers
        return {
            "net": self.net.get_state(),
            "weights": [m.weight.detach().clone() for m in layers],
            "trained": self.trained.clone(),
            "score_bank": [[s.clone() for s in row] for row in self.score_bank],
            "free_fraction": list(self.free_fraction),
            "kkt_source": [-1 if s is None else s for s in self.kkt_source],
            "kkt_accuracy": [list(a) for a in self.kkt_accuracy],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        import torch

        from clbench.supermask.nets import model_from_state

        device = self.ctx.device
        net = model_from_state(state["net"]).to(device)
        with torch.no_grad():
            for layer, w in zip(net.masked_layers, state["weights"], strict=True):
                layer.weight.copy_(w)
        net.weights_changed()
        net.eval()
        self.net = net
        self.used = torch.zeros(net.num_weights, dtype=torch.bool, device=device)
        for i in range(net.num_tasks):
            self.used |= net.store.mask(i)
        self.trained = state["trained"].to(device, torch.bool)
        self.score_bank = [[s.to(device) for s in row] for row in state["score_bank"]]
        self.free_fraction = list(state["free_fraction"])
        self.kkt_source = [None if s < 0 else s for s in state["kkt_source"]]
        self.kkt_accuracy = [list(a) for a in state["kkt_accuracy"]]


@register_method
class SSNeT(ExSSNeT):
    name = "ssnet"
    description = "SSNeT (ExSSNeT's ablation): per task train every weight its mask selects, " \
                  "those shared with earlier masks included, so earlier tasks change"
    exclusive = False


def knn_accuracy(features: Any, labels: Any, k: int, memory: float = KNN_MEMORY) -> float:
    """Accuracy of a k-NN majority vote (Euclidean) on the last 1 − ``memory`` of the samples,
    with the first ``memory`` share as its memory."""
    import torch

    m = max(1, min(len(features) - 1, round(memory * len(features))))
    keys, key_labels = features[:m], labels[:m]
    k = min(k, m)
    correct = 0
    for q, y in zip(features[m:].split(1024), labels[m:].split(1024), strict=True):
        nearest = torch.cdist(q, keys).topk(k, dim=1, largest=False).indices
        correct += int((key_labels[nearest].mode(1).values == y).sum())
    return correct / (len(features) - m)


def kkt_accuracies(net: Any, chunks: list[tuple[Any, Any]], tasks: int, k: int) -> list[float]:
    """k-NN accuracy of the classifier's input features under each of the first ``tasks``
    stored masks (eval mode, no gradients), for (x, y) ``chunks`` of the new task's data."""
    import torch

    head = net.masked_layers[-1]
    labels = torch.cat([y for _, y in chunks])
    seen: list[Any] = []
    hook = head.register_forward_hook(lambda module, args, out: seen.append(args[0]))
    net.eval()
    out = []
    try:
        with torch.no_grad():
            for task in range(tasks):
                net.use_task(task)
                seen.clear()
                for x, _ in chunks:
                    net(x)
                out.append(knn_accuracy(torch.cat(seen).flatten(1).float(), labels, k))
    finally:
        hook.remove()
    return out

"""SupSup: Supermasks in Superposition (Wortsman et al., NeurIPS 2020).

A fixed random network (bias-free, signed-constant weights drawn from the run seed, never
trained) and one binary supermask per task. GG uses the given task's mask. GNs/GNu infer the
task per test batch: α = 1/k over the k stored masks, one gradient of the objective (``H``:
entropy over all outputs; ``G``: logsumexp through the superfluous outputs only) w.r.t. α, and
the argmin (``inference=oneshot``), or repeated halving by the median gradient (``binary``). The
first ``infer_batch`` images of a batch decide for the whole batch, as in the paper; decisions
of a whole checkpoint are batched into one computation over the bit-packed masks.

NNs: no task ids in training. Every ``check_every`` batches of an epoch (the counter restarts
with each epoch and each task, as in the official trainer, so a check always falls on a task
boundary) the method infers among m = max(k, 5) masks (untrained ones included) on the current
training batch and allocates a new mask when m·max softmax(−g) < 1 + ``epsilon``; at most
``mask_budget`` masks. Allocated masks keep their float scores in NNs (4 bytes per weight per
mask, plus RMSprop's state for trained ones), because a mask may be chosen and trained again;
GG/GN keep float scores only for the task being trained (and one running mean for
``init=transfer``). In NNs the oracle uses the mask most often trained on the task.

Training is :func:`clbench.training.fit`, the bare step loop over the clbench loader's batches
of each Avalanche experience, not an Avalanche template: per-iteration callbacks cost about 16%
of a LeNet step on this CPU, and the speed budget is 1.25x a hand-written loop. The network,
inference, prediction and byte formulas are the supermask library's (:mod:`clbench.supermask`).

Bytes: ``bits`` = 8 (seed) + k·⌈P/8⌉ (packed masks) + k·8·C_bn (per-task BatchNorm mean and
variance, float32); ``sparse`` (top-k masks) = 8 + Σ_tasks Σ_layers [2·nnz + 4·(cols + 1)]
+ k·8·C_bn, scipy's CSC with 16-bit row indices and 32-bit column pointers, an approximation of
the paper's encoding.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from clbench.method import Answer, Bytes, EvalRequest, Method, Preset, refuse
from clbench.models import MODELS
from clbench.params import Param
from clbench.protocols import CIFAR100_PAPER, MNIST_PAPER
from clbench.registry import register_method
from clbench.supermask.rules import INFERENCES, OBJECTIVES, check_outputs, refuse_per_task_bn

ROTATED_EVAL = "2,5,10,15,20,25,30,35,36"


@register_method
class SupSup(Method):
    name = "supsup"
    description = "Supermasks in Superposition: a binary mask per task on a fixed random " \
                  "network; task inferred by one gradient"
    scenarios = frozenset({"gg", "gns", "gnu", "nns"})
    models = tuple(MODELS)
    infers_task = True
    independent_requests = True  # MaskPredictor: a given task's mask, or One-Shot per batch
    uses_density = True
    variants_param = "objective"
    params = (
        Param("mask", str, "threshold", "threshold: score >= 0 (density uncontrolled); topk: "
              "edge-popup, keeps --density of each layer", choices=("threshold", "topk")),
        Param("er_scale", int, 0, "topk with the ER layer-wise budget of integer scale S "
              "(0: uniform --density)", low=0),
        Param("init", str, "random", "scores of a new task: random, or transfer (mean of the "
              "earlier tasks' scores)", choices=("random", "transfer")),
        Param("output_size", int, 0, "output neurons (0: classes per task; extra ones are the "
              "superfluous neurons G needs)", low=0),
        Param("objective", str, ("H",), "task-inference objective(s); H,G evaluates both from "
              "one training run", choices=OBJECTIVES, multiple=True),
        Param("inference", str, "oneshot", "oneshot (one gradient) or binary (halving)",
              choices=INFERENCES),
        Param("infer_batch", int, 1, "images of each test batch that decide its task", low=1),
        Param("optimizer", str, "rmsprop", "optimizer of the scores",
              choices=("rmsprop", "adam", "sgd")),
        Param("lr", float, 1e-4, "learning rate of the scores (--lr)", low=0.0),
        Param("momentum", float, 0.9, "SGD momentum", low=0.0, high=1.0),
        Param("weight_decay", float, 0.0, "weight decay on the scores", low=0.0),
        Param("schedule", str, "none", "cosine: learning rate annealed over each task's epochs",
              choices=("none", "cosine")),
        Param("check_every", int, 100, "NNs: batches between task checks", low=1),
        Param("mask_budget", int, 2500, "NNs: most masks ever allocated", low=1),
        Param("epsilon", float, 0.125, "NNs: allocate when m*max softmax(-g) < 1 + epsilon",
              low=0.0),
    )
    presets = (
        Preset({"scenario": "gg"}, MNIST_PAPER, {"output_size": 100},
               "PermutedMNIST, LeNet, RMSprop 1e-4, 1000 batches of 128 per task"),
        Preset({"scenario": "gns"}, MNIST_PAPER, {"output_size": 100}, "as GNu"),
        Preset({"scenario": "gnu"}, MNIST_PAPER, {"output_size": 100},
               "Fig. 3 left: PermutedMNIST, LeNet, output 100, One-Shot with one image"),
        Preset({"scenario": "nns"}, MNIST_PAPER, {"output_size": 500},
               "Fig. 4: NNs, LeNet, output 500, check every 100 batches, budget 2500"),
        Preset({"model": "fc1024", "benchmark": "permuted"}, {}, {"output_size": 500},
               "Fig. 3 right: FC-1024, output 500"),
        Preset({"preset": "paper", "benchmark": "rotated"},
               {"model": "fc1024", "tasks": 36, "eval_at": ROTATED_EVAL},
               {"output_size": 200, "inference": "binary", "infer_batch": 128},
               "Fig. 5 left: RotatedMNIST, FC-1024, output 200, Binary on the full batch"),
        Preset({"preset": "paper", "dataset": "cifar100"},
               CIFAR100_PAPER,
               {"mask": "topk", "optimizer": "adam", "lr": 1e-3, "weight_decay": 1e-4,
                "schedule": "cosine", "output_size": 0},
               "Fig. 2 right: SplitCIFAR100, GEMResNet18, Adam 1e-3, 250 epochs; give the "
               "density or er_scale (the paper sweeps S = 1..32)"),
        Preset({"preset": "paper", "dataset": "imagenet"},
               {"benchmark": "split", "model": "resnet50", "tasks": 100, "epochs": 100,
                "iters": None, "batch_size": 256},
               {"mask": "topk", "optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0,
                "schedule": "cosine", "output_size": 0},
               "Fig. 2 left: SplitImageNet, ResNet-50, Adam 1e-3, wd 0, 100 epochs per task; "
               "give er_scale (4, 8 or 16)"),
    )
    bytes_rules = {
        "bits": "8 (seed) + k*ceil(P/8) (bit-packed masks) + k*8*C_bn (per-task BN mean, var)",
        "sparse": "topk only: 8 + sum over tasks and layers of 2*nnz + 4*(cols+1), + k*8*C_bn",
    }

    @classmethod
    def check(cls, options: dict[str, Any], params: dict[str, Any], props: Any) -> None:
        scenario, model = options["scenario"], options["model"]
        density, er_scale = options.get("density"), params["er_scale"]
        if params["mask"] == "threshold":
            if density is not None or er_scale:
                refuse("threshold masks keep about half the weights, uncontrolled: "
                       "--density and er_scale need --param mask=topk")
        elif (density is None) == (not er_scale):
            refuse("topk masks need exactly one of --density and --param er_scale")
        refuse_per_task_bn(scenario, model, cls.models)
        if scenario != "gg" and model == "bnnet" and params["infer_batch"] < 2:
            refuse("bnnet normalises with batch statistics: task inference needs "
                   "--param infer_batch=2 or more")
        check_outputs(params, props, params["objective"])
        if scenario == "nns" and params["init"] == "transfer":
            refuse("init=transfer needs task boundaries, which NNs does not give")
        if scenario == "nns" and params["mask"] == "topk":
            refuse("NNs uses threshold masks (as the paper): drop mask=topk")

    # ---------------------------------------------------------------- run time

    def __init__(self, ctx: Any) -> None:
        super().__init__(ctx)
        from math import prod

        from clbench.supermask.inference import ScoreBank
        from clbench.supermask.nets import build_model

        p = ctx.params
        self.classes = ctx.props.classes_per_task
        self.net = build_model(
            ctx.config.model, p["output_size"] or self.classes, ctx.config.seed,
            mask=p["mask"], density=ctx.config.density, er_scale=p["er_scale"] or None,
            init=p["init"], in_features=prod(ctx.props.input_shape),
        ).to(ctx.device)
        self.nns = ctx.scenario.name == "nns"
        self.bank = ScoreBank(self.net) if self.nns else None
        # NNs: masks allocated so far, the mask being trained, one optimizer over every
        # allocated mask's scores, and per task the masks allocated and steps per mask
        self.masks = self.current = 0
        self.bank_optimizer: Any = None
        self.allocated: list[int] = []
        self.trained_on: list[Counter] = []

    def _optimizer(self, params: list[Any]) -> Any:
        from clbench.training import make_optimizer

        return make_optimizer(params, self.ctx.params)

    def train_experience(self, experience: Any) -> None:
        if self.nns:
            self._train_nns(experience.current_experience)
            return
        import torch

        from clbench.training import epochs, fit

        index = experience.task_label  # the task view: the given task id
        if index != self.net.num_tasks:
            raise RuntimeError(f"SupSup learns tasks in order: got task {index}, expected "
                               f"{self.net.num_tasks}")
        self.net.train()
        self.net.new_task(self.ctx.generator("scores", index))
        optimizer = self._optimizer(self.net.score_parameters())
        schedule = None
        if self.ctx.params["schedule"] == "cosine":
            schedule = torch.optim.lr_scheduler.CosineAnnealingLR(
                optimizer, T_max=self.ctx.config.epochs or 1)
        for batches in epochs(self.ctx, index):
            fit(self.net, optimizer, batches)
            if schedule is not None:
                schedule.step()
        self.net.commit_task()
        self.net.eval()

    def _train_nns(self, experience_index: int) -> None:
        from clbench.training import epochs, fit

        bank = self.bank
        if self.bank_optimizer is None:
            bank.grow(1, self.ctx.generator("scores", 0))
            self.masks = 1
            self.bank_optimizer = self._optimizer(bank.parameters(0))
        per_epoch = -(-len(self.ctx.task_data(experience_index, "train"))
                      // self.ctx.config.batch_size)
        steps: Counter = Counter()
        self.net.train()
        for batches in epochs(self.ctx, experience_index):
            fit(self.net, self.bank_optimizer, self._checked(batches, per_epoch, steps))
        self.net.eval()
        self.allocated.append(self.masks)
        self.trained_on.append(steps)

    def _checked(self, batches: Any, per_epoch: int, steps: Counter) -> Any:
        """NNs: the batches, a task check before every ``check_every``-th of each data epoch,
        each batch counted as a step of the mask it trains."""
        check_every = self.ctx.params["check_every"]
        for step, batch in enumerate(batches):
            if (step % per_epoch) % check_every == 0:
                self._check(batch[0])
            steps[self.current] += 1
            yield batch

    def _check(self, x: Any) -> None:
        """NNs: infer among max(k, 5) masks on this batch; allocate a new one if none fits."""
        from clbench.supermask.inference import nns_choice, nns_gradient

        p, bank = self.ctx.params, self.bank
        m = max(self.masks, 5)
        g = nns_gradient(self.net, bank, x, m, self.ctx.generator("bank", m))
        choice = nns_choice(g, p["epsilon"])
        if choice is None:
            choice = self.masks if self.masks < p["mask_budget"] else self.current
            self.masks = max(self.masks, choice + 1)
        self.current = choice
        bank.grow(choice + 1, self.ctx.generator("bank", choice + 1))
        trained = sum(len(group["params"]) for group in self.bank_optimizer.param_groups)
        for row in range(trained // len(bank.parameters(0)), bank.count):
            self.bank_optimizer.add_param_group({"params": bank.parameters(row)})
        bank.select(choice)

    # ---------------------------------------------------------------- prediction

    def predict(self, requests: list[EvalRequest]) -> list[Answer]:
        from clbench.supermask.predict import MaskPredictor

        if not self.nns:
            return MaskPredictor(self.net, self.classes, self.ctx.params).predict(requests)
        return MaskPredictor(
            self.net, self.classes, self.ctx.params, bank=self.bank,
            bank_masks=lambda: self.masks,
            oracle=lambda task: self.trained_on[task].most_common(1)[0][0],
        ).predict(requests)

    # ---------------------------------------------------------------- checkpoints

    def state_dict(self) -> dict[str, Any]:
        """GG/GN: the net's packed masks, BN statistics and transfer mean; NNs also every
        allocated mask's float scores, their optimizer's state and the allocation history."""
        if not self.nns:
            return {"net": self.net.get_state()}
        return {
            "net": self.net.get_state(),
            "bank": [[p.detach().cpu() for p in self.bank.parameters(i)]
                     for i in range(self.bank.count)],
            "optimizer": self.bank_optimizer.state_dict(),
            "masks": self.masks, "current": self.current, "allocated": list(self.allocated),
            "trained_on": [{str(k): v for k, v in c.items()} for c in self.trained_on],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        from clbench.supermask.inference import ScoreBank
        from clbench.supermask.nets import model_from_state

        self.net = model_from_state(state["net"]).to(self.ctx.device)
        if not self.nns:
            return
        self.bank = ScoreBank(self.net)
        self.bank.grow(len(state["bank"]))
        for i, row in enumerate(state["bank"]):
            for p, saved in zip(self.bank.parameters(i), row, strict=True):
                p.data.copy_(saved)
        groups = len(state["optimizer"]["param_groups"])
        self.bank_optimizer = self._optimizer(self.bank.parameters(0))
        for i in range(1, groups):
            self.bank_optimizer.add_param_group({"params": self.bank.parameters(i)})
        self.bank_optimizer.load_state_dict(state["optimizer"])
        self.masks, self.current = state["masks"], state["current"]
        self.allocated = list(state["allocated"])
        self.trained_on = [Counter({int(k): v for k, v in c.items()})
                           for c in state["trained_on"]]
        self.bank.select(self.current)

    # ---------------------------------------------------------------- accounting

    def bytes(self) -> dict[str, Bytes]:
        from clbench.supermask.sizes import SEED_BYTES, bits_bytes, sparse_bytes

        if self.nns:
            k = self.masks
            return {"bits": Bytes(SEED_BYTES + k * self.net.store.row_bytes, "supsup-bits-v1")}
        out = {"bits": Bytes(bits_bytes(self.net), "supsup-bits-v1")}
        if self.ctx.params["mask"] == "topk":
            out["sparse"] = Bytes(sparse_bytes(self.net), "supsup-csc16-v1")
        return out

    def extras(self) -> dict[str, Any]:
        """``overall_density`` and ``layer_densities`` (the top-k budget, null for threshold
        masks), ``mask_density`` (fraction of weights each stored mask keeps); NNs:
        ``masks_allocated`` after each task, ``mask_steps`` (training steps per mask, per
        task)."""
        from clbench.supermask.sizes import mask_stats

        out = mask_stats(self.net)
        if self.nns:
            out["masks_allocated"] = self.allocated
            out["mask_steps"] = [{str(k): v for k, v in sorted(c.items())}
                                 for c in self.trained_on]
        return out

"""Avalanche's own strategies as clbench methods, by name: ``--method avalanche:EWC``.

Each runs through :class:`clbench.avalanche.AvalancheMethod` (the clbench loader, one Avalanche
epoch = one task's ``--iters`` batches) on a plain trainable model with biases. Label views:
GG the task view (one shared head, per-task labels), GNs the domain view (no task id), GNu the
class-incremental view (labels y + t·C over T·C outputs). Strategy arguments default to the
ContinualAI/continual-learning-baselines PermutedMNIST experiments (``experiments/
permuted_mnist/*.py``) unless noted; the optimizer defaults (SGD 0.01, momentum 0.9) are shared
by all so that the strategies differ only in what they add. Plugins that build their own data
loaders (EWC's importances, Replay's buffer, GEM's memory) read samples one at a time through
the same task view (``TaskData.__getitem__`` equals the batch path).

Bytes (P = model parameters, D = input size in bytes as uint8, k = tasks learned):
Naive 4P; EWC separate 4P + 8P·k (Fisher + old parameters per task), online 4P + 8P;
SI 4P + 8P (Ω and θ*); LwF 4P + 4P (the previous model); Replay 4P + n·(D + 8) for the n
samples in the buffer; GEM 4P + n·(D + 8) for the n stored patterns; PackNet 4P + P (one
uint8 owner task per parameter).
"""

from __future__ import annotations

from typing import Any

from clbench.avalanche import OPTIMIZER_PARAMS, AvalancheMethod, parameter_count
from clbench.method import Preset, refuse
from clbench.params import Param
from clbench.protocols import MNIST_PAPER
from clbench.registry import register_method

CONTINUAL = frozenset({"gg", "gns", "gnu"})
PAPER_PRESETS = tuple(
    Preset({"scenario": s}, MNIST_PAPER, {}, "SupSup's PermutedMNIST protocol: LeNet, 1000 "
           "batches of 128 per task")
    for s in sorted(CONTINUAL)
)


@register_method
class Naive(AvalancheMethod):
    """Fine-tuning: one model trained on every task in turn (the lower bound of forgetting)."""

    name = "avalanche:naive"
    description = "Avalanche Naive: fine-tune one shared model on each task in turn"
    scenarios = frozenset({"gg", "gns", "gnu", "nns"})
    strategy_class = "Naive"


@register_method
class EWC(AvalancheMethod):
    name = "avalanche:ewc"
    description = "Avalanche EWC: quadratic penalty weighted by the diagonal Fisher"
    scenarios = CONTINUAL
    strategy_class = "EWC"
    presets = PAPER_PRESETS
    params = OPTIMIZER_PARAMS + (
        Param("ewc_lambda", float, 1.0, "penalty weight (CL-baselines pmnist: 1)", low=0.0),
        Param("mode", str, "separate", "separate: one Fisher per task; online: one decayed "
              "Fisher", choices=("separate", "online")),
        Param("decay_factor", float, 1.0, "online mode: decay of the old Fisher", low=0.0,
              high=1.0),
    )
    bytes_rules = {"fp32": "ewc-v1: 4P + 8P·k (separate) or 4P + 8P (online)"}

    def strategy_kwargs(self) -> dict[str, Any]:
        p = self.ctx.params
        return {"ewc_lambda": p["ewc_lambda"], "mode": p["mode"],
                "decay_factor": p["decay_factor"] if p["mode"] == "online" else None}

    def stored(self) -> dict[str, int]:
        plugin = self.plugin("EWCPlugin")
        per = 8 * parameter_count(self.model)
        return {"fp32": per * (len(plugin.importances) if self.ctx.params["mode"] == "separate"
                               else min(1, len(plugin.importances)))}


@register_method
class SynapticIntelligence(AvalancheMethod):
    name = "avalanche:synapticintelligence"
    description = "Avalanche Synaptic Intelligence: path-integral importance penalty"
    scenarios = CONTINUAL
    strategy_class = "SynapticIntelligence"
    presets = PAPER_PRESETS
    params = OPTIMIZER_PARAMS + (
        Param("si_lambda", float, 0.1, "penalty weight (CL-baselines pmnist: 0.1)", low=0.0),
        Param("eps", float, 0.1, "damping of the importance (CL-baselines pmnist: 0.1)",
              low=0.0),
    )
    bytes_rules = {"fp32": "si-v1: 4P + 8P (importance Ω and anchor θ*)"}

    def strategy_kwargs(self) -> dict[str, Any]:
        return {"si_lambda": self.ctx.params["si_lambda"], "eps": self.ctx.params["eps"]}

    def stored(self) -> dict[str, int]:
        return {"fp32": 8 * parameter_count(self.model)}


@register_method
class LwF(AvalancheMethod):
    name = "avalanche:lwf"
    description = "Avalanche Learning without Forgetting: distil the previous model's outputs"
    scenarios = CONTINUAL
    strategy_class = "LwF"
    presets = PAPER_PRESETS
    params = OPTIMIZER_PARAMS + (
        Param("alpha", float, 1.0, "distillation weight (CL-baselines pmnist: 1)", low=0.0),
        Param("temperature", float, 1.0, "softmax temperature (CL-baselines pmnist: 1)",
              low=1e-6),
    )
    bytes_rules = {"fp32": "lwf-v1: 4P + 4P (the previous model)"}

    def strategy_kwargs(self) -> dict[str, Any]:
        return {"alpha": self.ctx.params["alpha"],
                "temperature": self.ctx.params["temperature"]}

    def stored(self) -> dict[str, int]:
        return {"fp32": 4 * parameter_count(self.model)}


@register_method
class Replay(AvalancheMethod):
    """Avalanche's ReplayPlugin buffer (experience-balanced), mixed into clbench's batches.

    Avalanche's own ``Replay`` swaps the training loader for a ``ReplayDataLoader`` (one pass
    over the data, not ``--iters`` batches); here every clbench batch is concatenated with a
    batch of the same size drawn from the buffer, as ``ReplayDataLoader`` does."""

    name = "avalanche:replay"
    description = "Avalanche Replay: an experience-balanced buffer mixed into every batch"
    scenarios = CONTINUAL
    strategy_class = "Naive"
    presets = PAPER_PRESETS
    params = OPTIMIZER_PARAMS + (
        Param("mem_size", int, 200, "buffer size in samples (Avalanche's default: 200)", low=1),
    )
    bytes_rules = {"fp32": "replay-v1: 4P + n·(D + 8), n samples in the buffer, D uint8 "
                           "input bytes, an int64 label"}

    def plugins(self) -> list[Any]:
        from clbench.avalanche import ClbenchReplayPlugin

        self.replay = ClbenchReplayPlugin(self.ctx, self.ctx.params["mem_size"])
        return [self.replay]

    def stored(self) -> dict[str, int]:
        return {"fp32": len(self.replay.storage_policy.buffer) * self.sample_bytes}


@register_method
class GEM(AvalancheMethod):
    name = "avalanche:gem"
    description = "Avalanche GEM: project gradients so no stored task's loss increases"
    scenarios = CONTINUAL
    strategy_class = "GEM"
    presets = PAPER_PRESETS
    params = OPTIMIZER_PARAMS + (
        Param("patterns_per_exp", int, 1000, "patterns stored per task (CL-baselines pmnist: "
              "1000, as the GEM paper)", low=1),
        Param("memory_strength", float, 0.5, "margin γ of the QP (CL-baselines pmnist: 0.5)",
              low=0.0),
    )
    bytes_rules = {"fp32": "gem-v1: 4P + n·(D + 8), n stored patterns"}

    def strategy_kwargs(self) -> dict[str, Any]:
        return {"patterns_per_exp": self.ctx.params["patterns_per_exp"],
                "memory_strength": self.ctx.params["memory_strength"]}

    def stored(self) -> dict[str, int]:
        plugin = self.plugin("GEMPlugin")
        return {"fp32": sum(len(m) for m in plugin.memory_x.values()) * self.sample_bytes}


@register_method
class PackNet(AvalancheMethod):
    """PackNet (GG only: a task's weights are chosen by its id). With ``--iters N`` the N
    batches are dealt into ``epochs`` Avalanche epochs; the last ``post_prune_epochs`` of them
    fine-tune after pruning (CL-baselines split_tiny_imagenet: 15 of 30 epochs, i.e. half).
    ``prune_proportion`` ``equal`` prunes 1 − 1/(T − t) of the free weights after task t, so
    every task owns about P/T weights (CL-baselines' rule; 0.90, 0.88, ... for T = 10)."""

    name = "avalanche:packnet"
    description = "Avalanche PackNet: prune after each task, freeze the kept weights"
    scenarios = frozenset({"gg"})
    models = ("lenet", "fc1024")
    strategy_class = "PackNet"
    presets = (PAPER_PRESETS[0],)
    params = OPTIMIZER_PARAMS + (
        Param("prune_proportion", str, "equal", "fraction of free weights pruned after each "
              "task: equal (1 - 1/(T - t)) or a number in [0, 1)"),
        Param("epochs", int, 2, "Avalanche epochs one task's --iters batches are dealt into",
              low=2),
        Param("post_prune_epochs", int, 1, "epochs of fine-tuning after pruning (< epochs)",
              low=1),
    )
    bytes_rules = {"fp32": "packnet-v1: 4P + P (one uint8 owner task per parameter)"}

    @classmethod
    def check(cls, options: dict[str, Any], params: dict[str, Any], props: Any) -> None:
        text = params["prune_proportion"]
        if text != "equal":
            try:
                value = float(text)
            except ValueError:
                value = -1.0
            if not 0 <= value < 1:
                refuse(f"--param prune_proportion={text}: give equal or a number in [0, 1)")
        epochs = options.get("epochs") or params["epochs"]
        if params["post_prune_epochs"] >= epochs:
            refuse(f"post_prune_epochs {params['post_prune_epochs']} must be below the "
                   f"{epochs} epochs per task")

    def wrap_model(self, model: Any) -> Any:
        from avalanche.models.packnet import PackNetModel

        return PackNetModel(model)

    def epochs_with_iters(self) -> int:
        return self.ctx.params["epochs"]

    def strategy_kwargs(self) -> dict[str, Any]:
        p, tasks = self.ctx.params, self.ctx.props.tasks
        if p["prune_proportion"] == "equal":
            proportion: Any = [1 - 1 / (tasks - t) for t in range(tasks)]
        else:
            proportion = float(p["prune_proportion"])
        return {"post_prune_epochs": p["post_prune_epochs"], "prune_proportion": proportion}

    def stored(self) -> dict[str, int]:
        return {"fp32": parameter_count(self.model)}

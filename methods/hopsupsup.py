"""HopSupSup (Wortsman et al., NeurIPS 2020, §3.5 and App. B): supermasks stored as attractors
of a fixed-size Hopfield network, and its comparison arm with explicitly stored masks.

Both methods share one network and one training rule:

* Network (``bnnet``): in → 2048 → 2048 → T·C with fixed signed-constant weights (the weights
  SupSup's ``bnnet`` draws from the same seed), non-affine BatchNorm with the batch's own
  statistics at training and test, swish. A task's mask has **one bit per hidden unit**
  (2 × 2048 bits) and multiplies each unit's normalised activation; the output layer is not
  masked. GNu in the class-incremental view: one head over every task's classes (labels
  ``y + t·C``; for ``split`` MNIST's consecutive digit pairs, the digits themselves).
* Training: per task, scores start at 0 (every unit on), M = 1[score ≥ 0] straight-through,
  cross-entropy over all outputs, SGD (``lr`` 0.1, ``momentum`` 0.9, ``weight_decay`` 1e-4),
  1 epoch of batches of 128; the binary mask is kept, the scores dropped.

``supsup-hopfield`` stores each mask as x = 2M − 1 ∈ {±1}^d in a d×d matrix Ψ with Storkey's
rule (h = Ψx; Ψ ← Ψ + (x xᵀ − I − x hᵀ − h xᵀ)/d), plus the running sum of the ±1 masks (the
recovery's start). At test time it **recovers** a mask for each request from the request's own
test batches: free scores start at the mean stored ±1 mask, then one SGD step per test batch
(``recovery_lr`` 500, the same momentum and weight decay) on
(1 − b/N)·H + γ·(b/N)·Σ_memories E(2M − 1) at step b of N (H: mean output entropy;
E = −½ sᵀΨs; ``gamma`` 1.5e-3), and the batches are then predicted under the final mask.

``memory`` says what one Ψ holds. ``layer`` is the paper's code: one 2048×2048 matrix per hidden
layer, so the two halves of a mask are recovered by two independent attractor dynamics, tied
only through the entropy. On full SplitMNIST that recovers **chimeras**: for seed 0's task 2 the
first layer converges to task 2's mask and the second to task 0's (the entropy phase already
pulls the second layer towards task 0's mask, from 67 % to 76 % of its bits); over seeds 0-11,
6 of 60 task recoveries (in 5 seeds) miss 99 % of their bits within their 30-34 steps.
``joint`` (clbench's default) stores the concatenated 4096-bit mask in one 4096×4096 matrix,
whose energy couples the layers: a chimera is no longer a fixed point, and the layer that is
right pulls the other one along. Same recovery, same hyper-parameters; twice the bytes
(67.1 MB, or 33.6 MB symmetric) and about twice the Storkey capacity (1,004 patterns against
524 per layer). Over the same seeds 1 of 60 recoveries misses (seed 4's task 1, where the
entropy itself points elsewhere: One-Shot over the explicit masks picks that task's mask for
only 47 % of its batches). The 12-seed comparison is benchmarks/hopfield_memory.py
(reports/benchmarks/hopfield_memory.txt); the records of seeds 0-2 are in
reports/REPRODUCTION.md (HopSupSup).

**Recovery is transductive**: it adapts on the very test batches it is scored on, and it relies
on the engine's grouping of test batches by task (one request = one task's test set, so all N
steps see one task). No stored per-task mask is ever used to predict: a task id (the oracle
requests) cannot address a Hopfield memory, so given-task requests are recovered exactly like
inferred ones, and the oracle matrix equals the scenario matrix. The learned masks are also kept
(bit-packed, 512 B per task) **only** to score the recovery (bits recovered, recovery steps);
they are not counted in ``bytes()`` because nothing reads them to answer.

``supsup-units`` stores each mask explicitly (bit-packed) and infers the mask per test batch
with SupSup's One-Shot (objective H, α = 1/k, argmin of ∂H/∂α) on the first ``infer_batch``
images (default 64: the whole eval batch); the oracle uses the given task's mask.

Bytes, honestly: Ψ is constant in the number of tasks. Per layer (``layer``) it is
2 × 2048² fp32 = 33,554,432 B (≈ 33.6 MB; 16.8 MB if only the upper triangle is kept, Ψ being
symmetric), plus 2 × 2048 fp32 for the sum of the masks, 8 B of seed and 8 B of task count:
33,570,832 B. Joint (``joint``), 4096² fp32: 67,125,264 B (33,579,024 B symmetric). Explicit unit
masks cost 2 × 2048 bits = 512 B per task: 8 + 512·k B. Break-even is k = 65,569 tasks per
layer (131,105 joint; about half that with the symmetric encodings), while Storkey's rule
stores only about d/√(2 ln d) patterns: 524.5 in a 2048-unit memory, 1,004 in a 4096-unit
one. Within its capacity HopSupSup always stores **more** bytes than the explicit masks
(≥ 125× more at capacity, ≈ 13,000-26,000× more at 5 tasks). Its point is a fixed-size
associative memory with no per-task growth, not a byte saving.
"""

from __future__ import annotations

from typing import Any

from clbench.method import Answer, Bytes, EvalRequest, Method, Preset, refuse
from clbench.params import Param
from clbench.registry import register_method
from clbench.supermask.sizes import (
    MEMORIES,
    UNITS,
    explicit_bytes,
    hopfield_bytes,
    hopfield_comparison,
    memory_sizes,
)

SPLIT_MNIST = Preset(
    {},
    {"scenario": "gnu", "benchmark": "split", "dataset": "mnist", "model": "bnnet", "tasks": 5,
     "epochs": 1, "iters": None, "batch_size": 128, "eval_batch_size": 64},
    {},
    "App. B / Fig. 7: SplitMNIST (5 digit pairs), BNNet 2048-2048 with per-unit masks, "
    "1 epoch of batches of 128 per task, test batches of 64",
)
COMMON_PARAMS = (
    Param("lr", float, 0.1, "SGD learning rate of the unit scores in training (--lr)", low=0.0),
    Param("momentum", float, 0.9, "SGD momentum (training and recovery)", low=0.0, high=1.0),
    Param("weight_decay", float, 1e-4, "SGD weight decay on the scores (training and recovery)",
          low=0.0),
)


class _UnitMaskMethod(Method):
    """What both arms share: the network, training one unit mask per task, the learned masks
    (bit-packed rows), and the record of every inferred checkpoint."""

    scenarios = frozenset({"gnu"})
    models = ("bnnet",)
    infers_task = False  # class-incremental view; the engine counts prediction // C per sample
    presets = (SPLIT_MNIST,)

    @classmethod
    def check(cls, options: dict[str, Any], params: dict[str, Any], props: Any) -> None:
        if options["eval_batch_size"] < 2:
            refuse("bnnet normalises with batch statistics: --eval-batch-size must be 2 or more")

    def __init__(self, ctx: Any) -> None:
        super().__init__(ctx)
        from math import prod

        from clbench.supermask.hopfield import UnitMaskNet

        self.net = UnitMaskNet(prod(ctx.props.input_shape), UNITS, ctx.outputs,
                               ctx.config.seed).to(ctx.device)
        self.masks: list[list[Any]] = []  # per task, one bool [width] per hidden layer
        self.history: list[dict[str, Any]] = []  # one entry per checkpoint with inferred requests

    def train_experience(self, experience: Any) -> None:
        import torch

        from clbench.supermask.hopfield import unit_mask
        from clbench.training import epochs, fit, make_optimizer

        scores = [torch.nn.Parameter(torch.zeros(w, device=self.ctx.device)) for w in UNITS]
        optimizer = make_optimizer(scores, {**self.ctx.params, "optimizer": "sgd"})
        for batches in epochs(self.ctx, experience.current_experience):
            fit(lambda x: self.net(x, [unit_mask(s) for s in scores]), optimizer, batches)
        mask = [s.detach() >= 0 for s in scores]
        self.masks.append(mask)
        self._store(mask)

    def _store(self, mask: list[Any]) -> None:
        raise NotImplementedError

    def _logits(self, x: Any, mask: list[Any]) -> Any:
        return self.net(x, [m.float() for m in mask])

    # ---- checkpoints: the learned masks as packed rows, plus each arm's own state
    def _packed(self) -> Any:
        import torch

        from clbench.supermask.bits import pack_bits

        if not self.masks:
            return torch.zeros(0, sum(-(-w // 8) for w in UNITS), dtype=torch.uint8)
        return torch.stack([torch.cat([pack_bits(m.cpu()) for m in mask])
                            for mask in self.masks])

    def _unpacked(self, packed: Any) -> list[list[Any]]:
        from clbench.supermask.bits import unpack_bits

        out = []
        for row in packed:
            layers, start = [], 0
            for w in UNITS:
                n = -(-w // 8)
                layers.append(unpack_bits(row[start:start + n], w).to(self.ctx.device))
                start += n
            out.append(layers)
        return out

    def _mask_stats(self) -> dict[str, Any]:
        """How many units each mask keeps, and how far apart the masks are."""
        from clbench.supermask.hopfield import agreement

        bits = sum(UNITS)
        distances = [round((1 - agreement(a, b)) * bits)
                     for i, a in enumerate(self.masks) for b in self.masks[i + 1:]]
        return {
            "mask_density": [round(sum(int(m.sum()) for m in mask) / bits, 4)
                             for mask in self.masks],
            "mask_min_distance_bits": min(distances) if distances else None,
            "mask_mean_distance_bits": round(sum(distances) / len(distances), 1)
            if distances else None,
        }


@register_method
class HopSupSup(_UnitMaskMethod):
    name = "supsup-hopfield"
    description = "HopSupSup: per-unit supermasks stored in a Storkey Hopfield network, " \
                  "recovered transductively on each task's test batches"
    params = COMMON_PARAMS + (
        Param("recovery_lr", float, 500.0, "SGD learning rate of the recovered scores",
              low=0.0),
        Param("gamma", float, 1.5e-3, "weight of the Hopfield energy at the last recovery step",
              low=0.0),
        Param("recovery_passes", int, 1, "passes over a task's test batches during recovery "
              "(the paper: 1, one step per batch)", low=1),
        Param("memory", str, "joint", "joint: one Storkey memory over both hidden layers' "
              "units (4096); layer: one per hidden layer (the paper's code), which can "
              "recover each layer from a different task", choices=MEMORIES),
    )
    bytes_rules = {
        "fp32": "8 (seed) + 4*sum_m d_m^2 (one Storkey matrix per memory: d_m = 4096 joint, "
                "2048 per layer) + 4*sum_l d_l (sum of the +-1 masks per layer) + 8 (task "
                "count); constant in the number of tasks",
        "fp32-symmetric": "as fp32 with the upper triangle of each symmetric matrix, "
                          "4*sum_m d_m(d_m+1)/2",
    }

    def __init__(self, ctx: Any) -> None:
        super().__init__(ctx)
        import torch

        self.memory = ctx.params["memory"]
        self.psis = [torch.zeros(d, d, device=ctx.device) for d in memory_sizes(self.memory)]
        self.sums = [torch.zeros(d, device=ctx.device) for d in UNITS]

    def _store(self, mask: list[Any]) -> None:
        from clbench.supermask.hopfield import store_mask

        store_mask(self.psis, mask)
        for total, m in zip(self.sums, mask, strict=True):
            total += 2 * m.float() - 1

    def _recover(self, batches: Any, reference: list[Any] | None) -> Any:
        from clbench.supermask.hopfield import recover

        p = self.ctx.params
        start = [total / len(self.masks) for total in self.sums]
        return recover(self.net, self.psis, batches, start, lr=p["recovery_lr"],
                       momentum=p["momentum"], weight_decay=p["weight_decay"], gamma=p["gamma"],
                       passes=p["recovery_passes"], reference=reference)

    def predict(self, requests: list[EvalRequest]) -> list[Answer]:
        """Every request, given or not, is recovered from its own batches (see the module)."""
        import torch

        answers, rows = [], []
        for position, r in enumerate(requests):
            # the task whose learned mask scores the recovery: the given one, else the
            # request's position (the engine asks for tasks 0..k-1 in order; ``nearest``
            # below checks that without relying on it)
            task = position if r.task is None else r.task
            reference = self.masks[task] if task < len(self.masks) else None
            found = self._recover(r.batches, reference)
            with torch.no_grad():
                masks = [m.float() for m in found.masks]
                answers.append(Answer([self.net(x, masks).argmax(1) for x in r.batches]))
            if r.task is None:
                rows.append(self._row(found, reference))
        if rows:
            self.history.append({"after_tasks": len(self.masks), "tasks": rows})
        return answers

    def _row(self, found: Any, reference: list[Any] | None) -> dict[str, Any]:
        from clbench.supermask.hopfield import agreement

        nearest = max(range(len(self.masks)), key=lambda t: agreement(found.masks, self.masks[t]))
        row: dict[str, Any] = {"steps": found.steps, "nearest": nearest}
        if reference is not None:
            trace = found.trace
            row.update({
                "bits": round(trace[-1], 6),
                "wrong_bits": round((1 - trace[-1]) * sum(UNITS)),
                "start_bits": round(trace[0], 6),
                "steps_to_99": found.steps_to(0.99),
                "steps_to_exact": found.steps_to(1.0),
                "trace": [round(t, 4) for t in trace],
            })
        return row

    def bytes(self) -> dict[str, Bytes]:
        joint = "-joint" if self.memory == "joint" else ""
        return {"fp32": Bytes(hopfield_bytes(self.memory), f"hopfield-storkey{joint}-fp32-v1"),
                "fp32-symmetric": Bytes(hopfield_bytes(self.memory, symmetric=True),
                                        f"hopfield-storkey{joint}-fp32-sym-v1")}

    def extras(self) -> dict[str, Any]:
        """``recovery``: per checkpoint (``after_tasks``) and per inferred request (task i at
        position i), ``steps`` (gradient steps taken = test batches × passes), ``bits``
        (fraction of the task's 4,096 learned mask bits recovered exactly), ``wrong_bits``,
        ``start_bits`` (at the mean-mask start), ``steps_to_99``/``steps_to_exact`` (first
        step from which ≥ 99% / all bits stay right; null: never), ``nearest`` (the learned
        mask closest to the recovered one), ``trace`` (bits after 0..N steps). ``final``: the
        last checkpoint's per-task ``recovery_steps``, ``steps_to_99``, ``bits_recovered``.
        Per-task accuracy is the record's ``checkpoints[i].accuracy.default`` (methods never
        see labels). ``bytes``: the Hopfield store against explicit masks (break-even tasks,
        ``memory``, Storkey capacity per memory). ``mask_density``,
        ``mask_min_distance_bits``, ``mask_mean_distance_bits``: the learned masks (kept for
        these diagnostics only)."""
        out: dict[str, Any] = {"recovery": self.history,
                               "bytes": hopfield_comparison(len(self.masks), self.memory),
                               **self._mask_stats()}
        if self.history:
            last = self.history[-1]["tasks"]
            out["final"] = {
                "recovery_steps": [t["steps"] for t in last],
                "steps_to_99": [t.get("steps_to_99") for t in last],
                "bits_recovered": [t.get("bits") for t in last],
            }
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"psis": [p.cpu().clone() for p in self.psis],
                "sums": [s.cpu().clone() for s in self.sums],
                "masks": self._packed(), "history": self.history}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        device = self.ctx.device
        self.psis = [p.to(device, copy=True) for p in state["psis"]]
        self.sums = [s.to(device, copy=True) for s in state["sums"]]
        self.masks = self._unpacked(state["masks"])
        self.history = list(state["history"])


@register_method
class UnitMasks(_UnitMaskMethod):
    name = "supsup-units"
    description = "HopSupSup's comparison arm: per-unit supermasks on bnnet stored explicitly, " \
                  "One-Shot task inference on the whole eval batch"
    params = COMMON_PARAMS + (
        Param("infer_batch", int, 64, "images of each test batch that decide its mask "
              "(One-Shot, objective H)", low=2),
    )
    bytes_rules = {"bits": "8 (seed) + k*sum_l ceil(d_l/8) (bit-packed unit masks)"}

    images_per_call = 4096  # bounds the inputs of one One-Shot call

    def _store(self, mask: list[Any]) -> None:
        pass  # self.masks is the store

    def predict(self, requests: list[EvalRequest]) -> list[Answer]:
        import torch

        answers: list[Answer | None] = [None] * len(requests)
        with torch.no_grad():
            for i, r in enumerate(requests):
                if r.task is not None:
                    mask = self.masks[r.task]
                    answers[i] = Answer([self._logits(x, mask).argmax(1) for x in r.batches])
        inferring = [i for i, r in enumerate(requests) if r.task is None]
        if inferring:
            chosen = self._choose([requests[i] for i in inferring])
            rows = []
            with torch.no_grad():
                for position, (i, picks) in enumerate(zip(inferring, chosen, strict=True)):
                    r = requests[i]
                    answers[i] = Answer([self._logits(r.batches[b], self.masks[t]).argmax(1)
                                         for b, t in enumerate(picks)])
                    rows.append({"batches": len(picks),
                                 "right": round(sum(t == position for t in picks)
                                                / max(1, len(picks)), 6),
                                 "choices": {str(t): picks.count(t) for t in sorted(set(picks))}})
            self.history.append({"after_tasks": len(self.masks), "tasks": rows})
        return answers  # type: ignore[return-value]

    def _choose(self, requests: list[EvalRequest]) -> list[list[int]]:
        """One-Shot's mask per test batch, decisions of equal size batched together."""
        import torch

        from clbench.supermask.hopfield import oneshot

        stored = [torch.stack([mask[layer] for mask in self.masks]).float()
                  for layer in range(len(UNITS))]
        heads = [r.batches.heads(self.ctx.params["infer_batch"]) for r in requests]
        chosen = [[0] * len(h) for h in heads]
        by_size: dict[int, list[tuple[int, int]]] = {}
        for i, hs in enumerate(heads):
            for b, h in enumerate(hs):
                by_size.setdefault(len(h), []).append((i, b))
        for size, spots in sorted(by_size.items()):
            step = max(1, self.images_per_call // size)
            for s in range(0, len(spots), step):
                part = spots[s:s + step]
                x = torch.stack([heads[i][b] for i, b in part])
                for (i, b), t in zip(part, oneshot(self.net, x, stored).tolist(), strict=True):
                    chosen[i][b] = t
        return chosen

    def bytes(self) -> dict[str, Bytes]:
        return {"bits": Bytes(explicit_bytes(len(self.masks)), "unit-bits-v1")}

    def extras(self) -> dict[str, Any]:
        """``inference``: per checkpoint (``after_tasks``) and per inferred request (task i at
        position i), ``batches``, ``right`` (fraction of batches whose One-Shot mask is the
        task's own) and ``choices`` (batches per chosen mask). Per-task accuracy is the
        record's ``checkpoints[i].accuracy.default``. ``bytes``: these masks against the
        paper's per-layer Hopfield store (``memory=layer``). ``mask_density``,
        ``mask_min_distance_bits``, ``mask_mean_distance_bits``: as ``supsup-hopfield``."""
        return {"inference": self.history, "bytes": hopfield_comparison(len(self.masks), "layer"),
                **self._mask_stats()}

    def state_dict(self) -> dict[str, Any]:
        return {"masks": self._packed(), "history": self.history}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.masks = self._unpacked(state["masks"])
        self.history = list(state["history"])

"""What supermask methods store, in bytes, and what their masks keep: the formulas behind their
``bytes()`` and record extras. Torch-free: the formulas read counts, never tensors' values.

* Packed masks (:func:`bits_bytes`) and per-layer CSC masks (:func:`sparse_bytes`) of a
  :class:`~clbench.supermask.supernet.SupermaskNet`; :func:`mask_stats` (densities).
* HopSupSup: a Storkey Hopfield store (:func:`hopfield_bytes`) against explicit unit masks
  (:func:`explicit_bytes`), where they break even, and :func:`storkey_capacity`.
"""

from __future__ import annotations

import math
from typing import Any

from clbench.models import HIDDEN

SEED_BYTES = 8  # the run seed, from which every fixed weight is re-drawn
COUNT_BYTES = 8  # a task count
UNITS = HIDDEN["bnnet"]  # bnnet's hidden widths: one unit-mask bit per unit
MEMORIES = ("joint", "layer")  # one Hopfield memory over all hidden units, or one per layer


def bits_bytes(net: Any) -> int:
    """Bytes with bit-packed masks: 8 (seed) + k·⌈P/8⌉ + k·8·C_bn.

    k stored tasks, P masked weights, C_bn channels with per-task float32 running mean and var
    (0 for the MLPs).
    """
    k = net.store.count
    return SEED_BYTES + k * net.store.row_bytes + k * 8 * net.bn_channels


def sparse_bytes(net: Any) -> int:
    """Bytes with per-layer CSC masks (scipy.sparse.csc, 16-bit row indices, int32 pointers):

    8 (seed) + Σ_tasks Σ_layers [2·nnz_{t,l} + 4·(cols_l + 1)] + k·8·C_bn, where a layer's
    weight is the matrix [rows = out, cols = in·k_h·k_w] and nnz its kept weights in task t.
    """
    k = net.store.count
    total = SEED_BYTES + k * 8 * net.bn_channels
    for li, layer in enumerate(net.masked_layers):
        rows, cols = layer.weight.shape[0], layer.fan_in
        if rows > 65536:
            raise ValueError(f"{rows} rows do not fit 16-bit row indices")
        total += 2 * int(net.store.layer_counts(li).sum()) + 4 * (cols + 1) * k
    return total


def mask_stats(net: Any) -> dict[str, Any]:
    """``overall_density`` and ``layer_densities`` (the top-k budget, None for threshold masks)
    and ``mask_density`` (the share of all weights each stored mask keeps)."""
    store = net.store
    kept = sum(store.layer_counts(i) for i in range(len(net.masked_layers)))
    return {
        "overall_density": net.overall_density,
        "layer_densities": net.layer_densities,
        "mask_density": [round(int(n) / net.num_weights, 6) for n in kept] if store.count else [],
    }


# --------------------------------------------------------------------------- HopSupSup


def storkey_capacity(d: int) -> float:
    """Storkey's capacity estimate, about d/√(2 ln d) patterns in d units (524.5 for 2048)."""
    return d / math.sqrt(2.0 * math.log(d))


def memory_sizes(memory: str, widths: tuple[int, ...] = UNITS) -> tuple[int, ...]:
    """Units per Hopfield memory: one memory per hidden layer (``layer``, the paper's code) or
    one over all hidden units (``joint``)."""
    if memory not in MEMORIES:
        raise ValueError(f"memory {memory!r}: use one of {', '.join(MEMORIES)}")
    return tuple(widths) if memory == "layer" else (sum(widths),)


def hopfield_bytes(memory: str = "joint", widths: tuple[int, ...] = UNITS,
                   symmetric: bool = False) -> int:
    """Bytes HopSupSup keeps, whatever the number of tasks: seed + Ψ per memory (fp32, full or
    upper triangle) + the sum of the ±1 masks per layer (fp32) + the task count."""
    psi = sum(d * (d + 1) // 2 if symmetric else d * d for d in memory_sizes(memory, widths))
    return SEED_BYTES + 4 * psi + 4 * sum(widths) + COUNT_BYTES


def explicit_bytes(tasks: int, widths: tuple[int, ...] = UNITS) -> int:
    """Bytes of explicit unit masks: seed + k·Σ⌈d/8⌉ (512 B per task for bnnet)."""
    return SEED_BYTES + tasks * sum(-(-d // 8) for d in widths)


def break_even_tasks(memory: str = "joint", widths: tuple[int, ...] = UNITS,
                     symmetric: bool = False) -> int:
    """The fewest tasks whose explicit masks take at least the Hopfield store's bytes."""
    per_task = explicit_bytes(1, widths) - SEED_BYTES
    return -(-(hopfield_bytes(memory, widths, symmetric) - SEED_BYTES) // per_task)


def hopfield_comparison(tasks: int, memory: str) -> dict[str, Any]:
    """The bytes comparison both HopSupSup arms put in their extras, for a ``memory`` layout."""
    return {
        "tasks": tasks,
        "hopfield_fp32": hopfield_bytes(memory),
        "hopfield_fp32_symmetric": hopfield_bytes(memory, symmetric=True),
        "explicit_per_task": explicit_bytes(1) - SEED_BYTES,
        "explicit_now": explicit_bytes(tasks),
        "break_even_tasks": break_even_tasks(memory),
        "break_even_tasks_symmetric": break_even_tasks(memory, symmetric=True),
        "memory": memory,
        "storkey_capacity_per_memory": round(storkey_capacity(max(memory_sizes(memory))), 1),
    }

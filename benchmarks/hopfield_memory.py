"""HopSupSup's recovery with per-layer vs joint Hopfield memories, over many seeds.

For each seed: learn the five SplitMNIST unit masks once (paper defaults, full MNIST), store
them per layer (``memory=layer``, the paper's code) and jointly (``memory=joint``), recover each
task's mask from its test batches with the paper's recovery (lr 500, γ 1.5e-3, one step per
test batch of 64), and print per task the fraction of mask bits recovered and the first step
from which ≥ 99 % stay right (``-`` never); also One-Shot's share of right picks over the
explicit masks (the entropy signal both recoveries rely on).

    PYTHONPATH=. python benchmarks/hopfield_memory.py --data-root ../shared/data --seeds 0-11
"""

from __future__ import annotations

import argparse
import time
from types import SimpleNamespace

import torch

from clbench.context import RunContext
from clbench.methods.hopsupsup import HopSupSup
from clbench.plan import make_plan, with_data
from clbench.supermask.hopfield import Recovery, oneshot, recover, store_mask
from clbench.supermask.sizes import UNITS, memory_sizes

OPTIONS = ("scenario", "benchmark", "dataset", "model", "tasks", "iters", "epochs", "density",
           "sparsity", "label_view", "eval_at", "batch_size", "eval_batch_size")


def learn(seed: int, data_root: str) -> tuple[HopSupSup, list[list[torch.Tensor]]]:
    """The method after learning every task (paper defaults), and each task's test batches."""
    given = dict.fromkeys(OPTIONS) | {"seed": seed, "threads": torch.get_num_threads()}
    plan, source = with_data(make_plan("supsup-hopfield", given, ["memory=layer"]), data_root,
                             False)
    torch.manual_seed(seed)
    defs, _ = plan.benchmark.build(source, plan.config.tasks, plan.config.data_seed)
    ctx = RunContext(plan.config, plan.scenario, plan.props, source, defs, torch.device("cpu"))
    method = HopSupSup(ctx)
    for task in range(plan.config.tasks):
        method.train_experience(SimpleNamespace(current_experience=task, task_label=0))
    tasks = len(method.masks)
    return method, [list(ctx.test_batches(t, tasks)) for t in range(tasks)]


def store(masks: list[list[torch.Tensor]], memory: str) -> list[torch.Tensor]:
    sizes = memory_sizes(memory)
    psis = [torch.zeros(d, d) for d in sizes]
    for mask in masks:
        store_mask(psis, mask)
    return psis


def cell(found: Recovery) -> str:
    held = found.steps_to(0.99)
    return f"{100 * found.trace[-1]:6.2f}% @{'-' if held is None else held:>2}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default="../shared/data")
    parser.add_argument("--seeds", default="0-11", help="a range a-b or a comma list")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if "-" in args.seeds:
        low, high = map(int, args.seeds.split("-"))
        seeds = list(range(low, high + 1))
    else:
        seeds = [int(s) for s in args.seeds.split(",")]
    print(f"threads {args.threads}; per task: bits recovered @ first step from which >= 99% "
          "stay right; one-shot: share of test batches whose One-Shot pick is the task")
    missed = {"layer": 0, "joint": 0}
    for seed in seeds:
        start_time = time.perf_counter()
        method, batches = learn(seed, args.data_root)
        start = [total / len(method.masks) for total in method.sums]
        stored = [torch.stack([m[i] for m in method.masks]).float() for i in range(len(UNITS))]
        for memory in ("layer", "joint"):
            psis = store(method.masks, memory)
            cells = []
            for task, task_batches in enumerate(batches):
                found = recover(method.net, psis, task_batches, start,
                                reference=method.masks[task])
                missed[memory] += found.trace[-1] < 0.99
                cells.append(cell(found))
            print(f"seed {seed:2d} {memory:5s} " + " | ".join(cells), flush=True)
        right = []
        for task, task_batches in enumerate(batches):
            picks = torch.cat([oneshot(method.net, b.unsqueeze(0), stored) for b in task_batches])
            right.append(f"{100 * float((picks == task).float().mean()):3.0f}%")
        print(f"seed {seed:2d} one-shot " + " ".join(right)
              + f"   ({time.perf_counter() - start_time:.0f} s)", flush=True)
    total = len(seeds) * 5
    print(f"tasks below 99% of bits at the end: layer {missed['layer']}/{total}, "
          f"joint {missed['joint']}/{total}")


if __name__ == "__main__":
    main()

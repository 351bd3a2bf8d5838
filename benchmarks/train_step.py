"""SupSup training step inside the harness vs a minimal hand-written PyTorch loop.

Both do exactly the same work per step on `lenet` (output 100), permuted MNIST, batch 128:
sample a shuffled batch from the uint8 tensor, permute and normalise it, threshold the scores
(straight-through), forward, backward, RMSprop update. Prints both, side by side, in one run.

    python benchmarks/train_step.py --data-root ../shared/data --threads 2 --steps 1000
"""

from __future__ import annotations

import argparse
import json
import time


def harness(data_root: str, threads: int, steps: int) -> float:
    from clbench.avalanche import avalanche_streams
    from clbench.context import RunContext
    from clbench.plan import make_plan, with_data

    given = {"scenario": "gnu", "tasks": 1, "iters": steps, "threads": threads}
    plan, source = with_data(make_plan("supsup", given, []), data_root, False)
    defs, _ = plan.benchmark.build(source, 1, plan.config.data_seed)
    import torch

    ctx = RunContext(plan.config, plan.scenario, plan.props, source, defs, torch.device("cpu"))
    method = plan.method(ctx)
    experience = avalanche_streams(ctx).train_stream[0]
    start = time.perf_counter()
    method.train_experience(experience)
    return (time.perf_counter() - start) / steps


def hand_written(data_root: str, steps: int) -> float:
    import numpy as np
    import torch
    import torch.nn.functional as F

    from clbench.data import load_source

    x_all = load_source("mnist", data_root).train.x.view(60000, -1)
    y_all = load_source("mnist", data_root).train.y
    perm = torch.from_numpy(np.random.RandomState(1).permutation(784))
    gen = torch.Generator().manual_seed(0)
    sizes = [(300, 784), (100, 300), (100, 100)]
    weights, scores = [], []
    for out_f, in_f in sizes:
        w = torch.empty(out_f, in_f)
        torch.nn.init.kaiming_uniform_(w, a=5**0.5, generator=gen)
        weights.append(w.sign() * (2 / in_f) ** 0.5)
        s = torch.empty(out_f, in_f).uniform_(-in_f**-0.5, in_f**-0.5, generator=gen)
        scores.append(s.requires_grad_())

    class Threshold(torch.autograd.Function):
        @staticmethod
        def forward(ctx, s):
            return (s >= 0).to(s.dtype)

        @staticmethod
        def backward(ctx, g):
            return g

    opt = torch.optim.RMSprop(scores, lr=1e-4)
    order = torch.randperm(60000, generator=gen).split(128)
    start = time.perf_counter()
    for step in range(steps):
        if step % len(order) == 0 and step:
            order = torch.randperm(60000, generator=gen).split(128)
        idx = order[step % len(order)]
        x = torch.index_select(x_all[idx].float().div_(255), 1, perm).sub_(0.1307).div_(0.3081)
        h = x
        for i, (w, s) in enumerate(zip(weights, scores)):
            h = F.linear(h, w * Threshold.apply(s))
            if i < 2:
                h = F.relu(h)
        loss = F.cross_entropy(h, y_all[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default="../shared/data")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    hand_written(args.data_root, 50)  # warm up both paths
    harness(args.data_root, args.threads, 50)
    rows = []
    for _ in range(args.repeats):  # interleaved, best of each
        rows.append((hand_written(args.data_root, args.steps),
                     harness(args.data_root, args.threads, args.steps)))
    hand, ours = min(r[0] for r in rows), min(r[1] for r in rows)
    print(f"threads {args.threads}, {args.steps} steps, best of {args.repeats}")
    print(f"hand-written loop : {hand * 1e3:7.3f} ms/step")
    print(f"clbench harness   : {ours * 1e3:7.3f} ms/step")
    print(f"ratio             : {ours / hand:7.3f}  (budget 1.25)")
    print(json.dumps({"threads": args.threads, "steps": args.steps, "hand_ms": hand * 1e3,
                      "harness_ms": ours * 1e3, "ratio": ours / hand}))


if __name__ == "__main__":
    main()

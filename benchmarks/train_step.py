"""SupSup training step inside the harness vs a minimal hand-written PyTorch loop.

Both do exactly the same work per step on `lenet` (output 100), permuted MNIST, batch 128
(the harness through the engine, as a run trains, timed by the record's train_s_per_task):
sample a shuffled batch from the uint8 tensor, permute and normalise it, threshold the scores
(straight-through), forward, backward, RMSprop update. Prints both, side by side, in one run.
With ``--log csv`` (or another logger) the harness also runs as a logged run does (every
step's loss handed to the loggers, the CSV logger writing every 50 steps), paired with the
plain harness, and prints what that costs, also measured alone.

    python benchmarks/train_step.py --data-root ../shared/data --threads 2 --steps 1000
    python benchmarks/train_step.py --data-root ../shared/data --threads 1 --log csv
"""

from __future__ import annotations

import argparse
import json
import time


def harness(data_root: str, threads: int, steps: int, log: list[str] | None = None) -> float:
    """Seconds per step of one task trained as a run trains it (the engine's task loop, its
    loader and progress ticks), logged live to ``log`` when given."""
    import tempfile
    from pathlib import Path

    from clbench import engine
    from clbench.live import Live
    from clbench.plan import make_plan, with_data

    given = {"scenario": "gnu", "tasks": 1, "iters": steps, "threads": threads}
    plan, source = with_data(make_plan("supsup", given, []), data_root, False)
    live = None
    if log:
        folder = Path(tempfile.mkdtemp(prefix="clbench-train-step-"))
        live = Live(log, folder / "logs", folder / "train_loss.csv", "train-step")
    try:
        record = engine.execute(plan, source, ["train_step.py"], show_progress=False, live=live)
    finally:
        if live is not None:
            live.close()
    return record["timing"]["train_s_per_task"][0] / steps


def logging_overhead(log: list[str], steps: int = 20000) -> float:
    """Seconds a logged run adds to each step, measured alone (a whole step's time on a busy
    machine varies by more than this): the step loop on a tiny model, with and without the
    loss observer and loggers that a logged run adds, best of five."""
    import tempfile
    from pathlib import Path

    import torch

    from clbench.live import Live
    from clbench.training import train_steps

    w = torch.ones(4, requires_grad=True)
    x = torch.ones(4)
    optimizer = torch.optim.SGD([w], lr=1e-6)

    def loop() -> float:
        start = time.perf_counter()
        train_steps(optimizer, ((w * x).sum() for _ in range(steps)))
        return time.perf_counter() - start

    plain, logged = [], []
    for _ in range(5):
        plain.append(loop())
        folder = Path(tempfile.mkdtemp(prefix="clbench-log-cost-"))
        live = Live(log, folder / "logs", folder / "train_loss.csv", "cost")
        live.begin({}, 0, steps)
        live.training(0)
        logged.append(loop())
        live.trained(0.0)
        live.close()
    return (min(logged) - min(plain)) / steps


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
    parser.add_argument("--repeats", type=int, default=7, help="paired repeats (at least 7)")
    parser.add_argument("--log", action="append", default=[],
                        help="also time the harness as a run logged to this logger")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    hand_written(args.data_root, 50)  # warm up both paths
    harness(args.data_root, args.threads, 50)
    rows = []
    for repeat in range(args.repeats):  # paired, the loop and the harness taking turns first
        if not args.log:
            first_hand = repeat % 2 == 0
            a = hand_written(args.data_root, args.steps) if first_hand else None
            ours_now = harness(args.data_root, args.threads, args.steps)
            a = a if first_hand else hand_written(args.data_root, args.steps)
            rows.append((a, ours_now, 0.0))
            continue
        hand = hand_written(args.data_root, args.steps)
        pair = [harness(args.data_root, args.threads, args.steps, log)  # order alternates
                for log in ((None, args.log) if repeat % 2 == 0 else (args.log, None))]
        rows.append((hand, *(pair if repeat % 2 == 0 else pair[::-1])))
    import statistics

    hand = statistics.median(r[0] for r in rows)
    ours = statistics.median(r[1] for r in rows)
    ratios = sorted(r[1] / r[0] for r in rows)
    print(f"threads {args.threads}, {args.steps} steps, {args.repeats} paired repeats "
          "(medians; run it on an idle machine)")
    print(f"hand-written loop : {hand * 1e3:7.3f} ms/step")
    print(f"clbench harness   : {ours * 1e3:7.3f} ms/step")
    print(f"ratio             : {statistics.median(ratios):7.3f} median of the pairs, "
          f"{ratios[0]:.3f}-{ratios[-1]:.3f} range  (budget 1.05)")
    if args.log:
        logged = statistics.median(r[2] for r in rows)
        change = sorted(100 * (r[2] / r[1] - 1) for r in rows)
        extra = logging_overhead(args.log)
        print(f"harness --log {','.join(args.log)} : {logged * 1e3:7.3f} ms/step; against the "
              f"plain harness, taking turns: {statistics.median(change):+.2f}% median of the "
              f"pairs, {change[0]:+.1f}% to {change[-1]:+.1f}%")
        print(f"what --log {','.join(args.log)} adds per step, measured alone: "
              f"{extra * 1e6:.1f} µs = {100 * extra / ours:.2f}% of a harness step (budget 2%)")
    print(json.dumps({"threads": args.threads, "steps": args.steps, "hand_ms": hand * 1e3,
                      "harness_ms": ours * 1e3, "ratios": ratios}))


if __name__ == "__main__":
    main()

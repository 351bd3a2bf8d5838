"""Time One-Shot task inference (and a training step) of SupSup's tensor core.

Stores k random packed `lenet` masks (784-300-100-``--outputs``), then times One-Shot H
decisions: "single" = one decision (one image) per call, "batched" = ``--decisions`` decisions in
one call. Prints seconds per call, per decision and the process's peak RSS so far.

    PYTHONPATH=. python benchmarks/oneshot_scaling.py --threads 1
    PYTHONPATH=. python benchmarks/oneshot_scaling.py --masks 250 --decisions 19750 --train-step
"""

from __future__ import annotations

import argparse
import resource
import time

import torch
import torch.nn.functional as F

from clbench.supermask.inference import infer_tasks
from clbench.supermask.nets import build_model


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _train_step_ms(steps: int, outputs: int) -> float:
    net = build_model("lenet", outputs, seed=1)
    net.new_task(torch.Generator().manual_seed(0))
    opt = torch.optim.RMSprop(net.score_parameters(), lr=1e-4)
    x, y = torch.randn(128, 784), torch.randint(0, 10, (128,))
    for i in range(steps + 20):
        if i == 20:
            start = time.perf_counter()
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
    return (time.perf_counter() - start) / steps * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--masks", type=int, nargs="+", default=[10, 100, 250, 1000, 2500])
    parser.add_argument("--decisions", type=int, default=1000)
    parser.add_argument("--singles", type=int, default=20, help="single-decision calls timed")
    parser.add_argument("--outputs", type=int, default=100)
    parser.add_argument("--objective", choices=["H", "G"], default="H")
    parser.add_argument("--memory-mb", type=int, default=256)
    parser.add_argument("--train-step", action="store_true", help="also time a training step")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"threads={torch.get_num_threads()} outputs={args.outputs} objective={args.objective}")
    if args.train_step:
        print(
            f"lenet training step (batch 128, RMSprop): {_train_step_ms(200, args.outputs):.2f} ms"
        )
    gen = torch.Generator().manual_seed(0)
    kw = {"objective": args.objective, "real_classes": 10, "memory_mb": args.memory_mb}
    print(
        f"{'masks':>6} {'mode':>8} {'decisions':>9} {'s/call':>9} {'ms/decision':>11} {'peakMB':>7}"
    )
    for k in args.masks:
        net = build_model("lenet", args.outputs, seed=1)
        net.store.load(
            torch.randint(0, 256, (k, net.store.row_bytes), dtype=torch.uint8, generator=gen)
        )
        x = torch.randn(max(args.decisions, args.singles), 784, generator=gen)
        infer_tasks(net, x[:1], 1, **kw)  # warm-up; builds the cached mean mask
        start = time.perf_counter()
        for i in range(args.singles):
            infer_tasks(net, x[i : i + 1], 1, **kw)
        per = (time.perf_counter() - start) / args.singles
        print(f"{k:>6} {'single':>8} {1:>9} {per:>9.4f} {per * 1e3:>11.3f} {_peak_mb():>7.0f}")
        start = time.perf_counter()
        infer_tasks(net, x[: args.decisions], 1, **kw)
        took = time.perf_counter() - start
        print(
            f"{k:>6} {'batched':>8} {args.decisions:>9} {took:>9.3f} "
            f"{took / args.decisions * 1e3:>11.3f} {_peak_mb():>7.0f}"
        )


if __name__ == "__main__":
    main()

"""Time One-Shot task inference among k LeNet masks on real normalised permuted-MNIST images.

For each output size and k: k random packed masks (the masks prepared once, timed apart, as an
evaluation point does), then One-Shot H on ``--decisions`` single-image decisions (real MNIST
test digits, normalised, each under one of 16 random permutations) in one call, the median of
``--repeats`` calls; beside it, in the same run, a dense fp32 matrix product of the same
arithmetic (decisions × P weights × k masks, the median of five timings on a slice of masks,
scaled). Prints ms per decision, the dense floor, their ratio and the peak RSS. Then checks
that the committed answers (tests/golden/oneshot_answers.json, from the dense code before the
speed work) are reproduced at k = 2,500 except near-ties (< 1e-6).
Run it on an idle machine, once per thread count:

    python benchmarks/oneshot_scaling.py --data-root ../shared/data --threads 2
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import resource
import time
from pathlib import Path

import torch

from clbench.data import load_source
from clbench.supermask.inference import infer_tasks
from clbench.supermask.nets import build_model
from clbench.supermask.oneshot import prepared_masks

ROOT = Path(__file__).resolve().parents[1]


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def real_images(data_root: str, count: int) -> torch.Tensor:
    """``count`` normalised MNIST test digits, each under one of 16 random permutations."""
    source = load_source("mnist", data_root)
    info = source.info
    x = source.test.x[:count].reshape(count, -1).float().div(255)
    x = (x - info.mean[0]) / info.std[0]
    gen = torch.Generator().manual_seed(0)
    perms = [torch.randperm(784, generator=gen) for _ in range(16)]
    return torch.stack([x[i, perms[i % 16]] for i in range(count)])


def dense_ms(decisions: int, weights: int, k: int, chunk: int = 100, repeats: int = 5) -> float:
    """ms per decision of a dense fp32 [decisions, P] @ [P, k] product (the median of
    ``repeats`` timings on at most 256 decisions and ``chunk`` masks, scaled to k)."""
    decisions = min(decisions, 256)
    a = torch.randn(decisions, weights)
    b = torch.randn(weights, min(chunk, k))
    a @ b
    took = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        took.append(time.perf_counter() - start)
    return sorted(took)[repeats // 2] * (k / min(chunk, k)) / decisions * 1e3


def check_answers() -> str:
    spec = importlib.util.spec_from_file_location("answers", ROOT / "tests/test_oneshot_answers.py")
    answers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(answers)  # type: ignore[union-attr]
    golden = json.loads(answers.GOLDEN.read_text())
    x = answers.images()
    lines = []
    for outputs, objective, k in answers.settings((2500,)):
        entry = golden[f"{outputs}-{objective}-{k}"]
        got = answers.answers(outputs, objective, k, x)
        differ = [i for i, (a, b) in enumerate(zip(got, entry["answers"], strict=True)) if a != b]
        ties = sum(entry["margins"][i] < answers.TIE for i in differ)
        lines.append(f"k={k} outputs={outputs} {objective}: {len(differ)} of {len(got)} answers "
                     f"differ from the committed ones, {ties} of them near-ties")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default="../shared/data")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--masks", type=int, nargs="+", default=[10, 100, 250, 1000, 2500])
    parser.add_argument("--outputs", type=int, nargs="+", default=[100, 500])
    parser.add_argument("--decisions", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per k (median)")
    parser.add_argument("--memory-mb", type=int, default=384)
    parser.add_argument("--no-check", action="store_true", help="skip the answers check")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    x = real_images(args.data_root, args.decisions)
    print(f"threads={torch.get_num_threads()} decisions={args.decisions} (one image each) "
          f"memory_mb={args.memory_mb} repeats={args.repeats} (medians)")
    print(f"{'outputs':>7} {'masks':>6} {'prepare s':>9} {'ms/decision':>11} "
          f"{'dense ms':>8} {'ratio':>6} {'peak MB':>7}")
    gen = torch.Generator().manual_seed(1)
    for outputs in args.outputs:
        for k in args.masks:
            net = build_model("lenet", outputs, seed=1)
            bits = torch.randint(0, 256, (k, net.store.row_bytes), dtype=torch.uint8,
                                 generator=gen)
            net.store.load(bits)
            start = time.perf_counter()
            prepared_masks(net, net.store, k, args.memory_mb << 18)
            infer_tasks(net, x[:8], 1, memory_mb=args.memory_mb)  # the cached mean mask
            prepare = time.perf_counter() - start
            took = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                infer_tasks(net, x, 1, memory_mb=args.memory_mb)
                took.append(time.perf_counter() - start)
            ours = sorted(took)[args.repeats // 2] / len(x) * 1e3
            floor = dense_ms(len(x), net.num_weights, k)
            print(f"{outputs:>7} {k:>6} {prepare:>9.2f} {ours:>11.3f} {floor:>8.3f} "
                  f"{ours / floor:>6.2f} {peak_mb():>7.0f}", flush=True)
    if not args.no_check:
        print(check_answers())


if __name__ == "__main__":
    main()

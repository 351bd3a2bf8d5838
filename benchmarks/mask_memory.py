"""Memory of finished masks: clbench's bit-packed store vs the official implementation.

Stores ``--tasks`` random `lenet` masks (784-300-100-``--outputs``) and reports the store's
bytes; the official code keeps, per task, float32 scores and a float32 cached mask of every
weight (2 x 4 bytes per weight per task), allocated up front.

    python benchmarks/mask_memory.py --tasks 2500 --outputs 100
"""

from __future__ import annotations

import argparse

import torch

from clbench.supermask.nets import build_model
from clbench.supermask.sizes import bits_bytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2500)
    parser.add_argument("--outputs", type=int, default=100)
    args = parser.parse_args()
    torch.set_num_threads(1)
    net = build_model("lenet", args.outputs, seed=1)
    gen = torch.Generator().manual_seed(0)
    for _ in range(args.tasks):
        net.store.append(torch.rand(net.num_weights, generator=gen) < 0.5)
    weights = net.num_weights
    store = net.store.nbytes
    official = 2 * 4 * weights * args.tasks
    print(f"lenet with {args.outputs} outputs: P = {weights:,} masked weights")
    print(f"clbench: {args.tasks} packed masks = {store:,} B = {store / 1e6:.1f} MB "
          f"({net.store.row_bytes:,} B per task; record 'bits' = {bits_bytes(net):,} B)")
    print(f"official: float scores + float cached masks = {official:,} B = "
          f"{official / 1e9:.2f} GB ({official / store:.0f}x)")


if __name__ == "__main__":
    main()

"""SupSup through the whole harness: accuracy, task inference, NNs allocation, refusals, bytes."""

from __future__ import annotations

from functools import partial

import pytest

from clbench.errors import Incompatible
from clbench.plan import make_plan

from inprocess import Small

LENET_100 = 784 * 300 + 300 * 100 + 100 * 100


SMALL = Small(dataset="mnist-5k", tasks=3, iters=100, lr=1e-3)
given, run = SMALL.given, partial(SMALL.run, "supsup")


@pytest.fixture(scope="module")
def gnu():
    return run(["objective=H,G"], scenario="gnu")


def test_paper_defaults_for_the_users_command():
    plan = make_plan("supsup", given(scenario="gnu", tasks=250, dataset=None, iters=None,
                                     lr=None), [])
    c = plan.config
    assert (c.benchmark, c.dataset, c.model, c.iters, c.batch_size, c.seed) == (
        "permuted", "mnist", "lenet", 1000, 128, 1)
    assert c.params["output_size"] == 100 and c.params["optimizer"] == "rmsprop"
    assert c.params["lr"] == 1e-4 and c.params["objective"] == ["H"]
    assert c.params["infer_batch"] == 1 and c.eval_at == [10, 50, 100, 150, 200, 250]


def test_gnu_infers_every_task_and_scores_both_objectives(gnu):
    assert gnu["variants"] == ["H", "G"]
    last = gnu["checkpoints"][-1]
    for v in ("H", "G"):
        assert last["task_inference"][v] == [1.0, 1.0, 1.0]
        assert last["accuracy"][v] == last["oracle"]  # every batch under its own mask
    assert min(gnu["diagonal"]) > 0.8  # far above chance (0.1)
    # masks never change once learned: the oracle of task 0 is the same at every checkpoint
    assert {c["oracle"][0] for c in gnu["checkpoints"]} == {gnu["diagonal"][0]}


def test_threshold_masks_keep_about_half_the_weights(gnu):
    densities = gnu["extras"]["mask_density"]
    assert len(densities) == 3 and all(0.3 < d < 0.7 for d in densities)
    assert gnu["extras"]["overall_density"] is None


def test_bytes_are_seed_plus_packed_bits(gnu):
    for c in gnu["checkpoints"]:
        k = c["after_tasks"]
        assert c["bytes"]["bits"]["bytes"] == 8 + k * -(-LENET_100 // 8)


def test_same_seed_same_matrices(gnu):
    again = run(["objective=H,G"], scenario="gnu")
    assert again["checkpoints"] == gnu["checkpoints"] and again["diagonal"] == gnu["diagonal"]


def test_gns_with_topk_masks_and_sparse_bytes():
    rec = run(["mask=topk"], scenario="gns", tasks=2, density=0.1, iters=60)
    last = rec["checkpoints"][-1]
    assert last["task_inference"]["H"] == [1.0, 1.0]
    assert rec["extras"]["mask_density"] == pytest.approx([0.1, 0.1], abs=1e-4)
    kept = sum(round(0.1 * n) for n in (784 * 300, 300 * 100, 100 * 100))
    cols = (784 + 1) + (300 + 1) + (100 + 1)
    assert abs(last["bytes"]["sparse"]["bytes"] - (8 + 2 * (2 * kept + 4 * cols))) <= 2 * 2 * 3


def test_nns_allocates_about_one_mask_per_task():
    rec = run(["check_every=20"], scenario="nns", tasks=4, iters=100)
    allocated = rec["extras"]["masks_allocated"]
    assert allocated == sorted(allocated) and 4 <= allocated[-1] <= 6
    assert all(b - a <= 2 for a, b in zip(allocated, allocated[1:]))
    assert min(rec["checkpoints"][-1]["oracle"]) > 0.6


@pytest.mark.parametrize("over, params, words", [
    ({"scenario": "gnu"}, ["objective=G", "output_size=10"], "superfluous"),
    ({"scenario": "gg", "density": 0.5}, [], "threshold masks"),
    ({"scenario": "gg"}, ["mask=topk"], "exactly one of --density"),
    ({"scenario": "gnu", "model": "gemresnet18", "benchmark": "split", "dataset": "synthetic"},
     [], "BatchNorm"),
    ({"scenario": "gnu", "model": "bnnet"}, [], "infer_batch"),
])
def test_refusals(over, params, words):
    with pytest.raises(Incompatible, match=words):
        make_plan("supsup", given(**over), params)

"""ExSSNeT and SSNeT: exclusivity (earlier tasks bit-exact), the editable sets, SSNeT's
forgetting, KKT's choice, equivalence with SupSup top-k, bytes, refusals and resuming."""

from __future__ import annotations

import io
import math

import pytest
import torch

import clbench.methods.exssnet  # noqa: F401 - registers the methods
from clbench.avalanche import avalanche_streams
from clbench.errors import Incompatible
from clbench.method import EvalRequest
from clbench.plan import make_plan

from inprocess import Small

LENET_10 = 784 * 300 + 300 * 100 + 100 * 10


SMALL = Small(scenario="gg", benchmark="permuted", dataset="mnist-5k", model="lenet", tasks=3,
              iters=40, density=0.1)
given, run, build = SMALL.given, SMALL.run, SMALL.build


def flat_weights(method):
    return torch.cat([m.weight.detach().reshape(-1) for m in method.net.masked_layers])


def test_earlier_tasks_are_bit_exact_and_the_weights_do_train():
    method, experiences, _ = build("exssnet")
    initial = flat_weights(method).clone()
    kept = []
    for t, e in enumerate(experiences):
        method.train_experience(e)
        kept.append(flat_weights(method) * method.net.store.mask(t))
    final = flat_weights(method)
    for t in range(len(experiences)):
        assert torch.equal(final * method.net.store.mask(t), kept[t])
    assert not torch.equal(final, initial)  # the weight phases trained something


def test_the_editable_set_is_the_mask_minus_earlier_masks_and_nothing_else_moves():
    method, experiences, _ = build("exssnet")
    store = method.net.store
    union = torch.zeros(store.num_bits, dtype=torch.bool)
    for t, e in enumerate(experiences):
        before = flat_weights(method).clone()
        method.train_experience(e)
        moved = flat_weights(method) != before
        mask = store.mask(t)
        expected = mask & ~union
        assert torch.equal(method.editable_set(t), expected)
        assert not (moved & ~expected).any()  # nothing outside E_t moved ...
        assert moved.sum() > 0.5 * expected.sum()  # ... and most of E_t did
        if t:
            assert (mask & union).any()  # masks overlap, so exclusivity excluded something
        assert method.free_fraction[t] == pytest.approx(float(expected.sum() / mask.sum()),
                                                        abs=1e-6)
        union |= mask
    assert method.extras()["trained_weights"] == int(union.sum())


def test_ssnet_changes_earlier_tasks():
    method, experiences, _ = build("ssnet", tasks=2)
    method.train_experience(experiences[0])
    first = method.net.store.mask(0)
    kept = flat_weights(method) * first
    before = flat_weights(method).clone()
    method.train_experience(experiences[1])
    assert not torch.equal(flat_weights(method) * first, kept)
    moved = flat_weights(method) != before
    assert torch.equal(method.editable_set(1), method.net.store.mask(1))
    assert not (moved & ~method.net.store.mask(1)).any()


def test_a_moved_frozen_weight_fails_the_run():
    method, experiences, _ = build("exssnet", tasks=2, iters=10)
    method.train_experience(experiences[0])
    method.net.new_task(torch.Generator().manual_seed(0))
    _, editable, before = method._start_weights()
    inside = (method.net.store.mask(0) & ~method.net.current_mask()).nonzero()[0, 0]
    with torch.no_grad():  # a weight of task 0's mask, outside the new mask: never editable
        flat = method.net.masked_layers[0].weight.view(-1)
        flat[inside] += 1.0
    with pytest.raises(RuntimeError, match="outside the editable set"):
        method._end_weights(editable, before)


def test_kkt_picks_the_earlier_task_that_shares_the_new_tasks_data():
    method, _, ctx = build("exssnet", ["kkt=best", "kkt_fraction=0.5"], iters=100)
    ctx._defs[2] = ctx._defs[1]  # the new task 2 is task 1's permutation again
    ctx._cache.clear()
    experiences = list(avalanche_streams(ctx).train_stream)
    for e in experiences:
        method.train_experience(e)
    accuracy = method.kkt_accuracy[2]
    assert method.kkt_source[2] == 1 and accuracy[1] > accuracy[0] + 0.05
    assert method.kkt_source[0] is None and method.kkt_accuracy[0] == []
    store = method.net.store
    m0, m1, m2 = (store.mask(i) for i in range(3))
    assert (m2 & m1).sum() > (m2 & m0).sum()  # it started from task 1's scores
    assert len(method.score_bank) == 3


def test_kkt_leaves_the_weights_and_mode_alone():
    method, experiences, ctx = build("exssnet", ["kkt=best"], iters=20)
    method.train_experience(experiences[0])
    method.net.new_task(ctx.generator("scores", 1))
    method.kkt_source.append(None)
    method.kkt_accuracy.append([])
    weights = flat_weights(method).clone()
    method._transfer(1)
    assert torch.equal(flat_weights(method), weights)
    assert method.net.mode == ("scores", 1) and method.net.training
    assert method.kkt_source[-1] == 0  # one earlier task, far above chance on MNIST digits
    assert all(torch.equal(a, b) for a, b in zip(method.net.score_parameters(),
                                                 method.score_bank[0], strict=True))


def test_mask_share_1_is_supsup_with_topk_masks():
    common = ["optimizer=adam", "output_size=0"]
    ex = run("exssnet", common + ["mask_share=1"], tasks=2, iters=30)
    sup = run("supsup", common + ["mask=topk"], tasks=2, iters=30, lr=1e-3)
    assert ex["diagonal"] == sup["diagonal"]
    assert [c["oracle"] for c in ex["checkpoints"]] == [c["oracle"] for c in sup["checkpoints"]]
    assert ex["extras"]["trained_weights"] == 0


def test_gnu_infers_every_task_and_never_forgets():
    rec = run("exssnet", scenario="gnu", tasks=3, iters=60)
    last = rec["checkpoints"][-1]
    assert last["task_inference"]["H"] == [1.0, 1.0, 1.0]
    assert min(rec["diagonal"]) > 0.8
    assert {c["oracle"][0] for c in rec["checkpoints"]} == {rec["diagonal"][0]}
    n = rec["extras"]["trained_weights"]
    assert 0 < n < LENET_10
    assert last["bytes"]["bits"] == {"bytes": 8 + 3 * -(-LENET_10 // 8) + 8 * n,
                                     "formula": "exssnet-bits-v1"}


@pytest.mark.parametrize("params", [[], ["kkt=best"]])
def test_bytes_follow_the_formula(params):
    method, experiences, _ = build("exssnet", params, tasks=2, iters=10)
    for e in experiences:
        method.train_experience(e)
    store, k, p = method.net.store, 2, LENET_10
    union = store.mask(0) | store.mask(1)  # every task had a weight phase: n = |M_0 ∪ M_1|
    extra = min(4 * p, 8 * int(union.sum())) + (4 * p * k if params else 0)
    got = method.bytes()
    assert got["bits"].bytes == 8 + k * -(-p // 8) + extra
    layers = ((784, 300), (300, 100), (100, 10))  # (cols = in, rows = out)
    nnz = sum(rows * cols - math.floor((1.0 - 0.1) * rows * cols) for cols, rows in layers)
    csc = 8 + k * (2 * nnz + sum(4 * (cols + 1) for cols, _ in layers))
    assert got["sparse"].bytes == csc + extra
    assert got["sparse"].formula == "exssnet-csc16-v1"


def test_resumed_after_a_task_gives_the_same_predictions():
    params = ["kkt=best"]
    whole, experiences, ctx = build("exssnet", params, iters=30)
    for e in experiences:
        whole.train_experience(e)

    first, experiences, _ = build("exssnet", params, iters=30)
    first.train_experience(experiences[0])
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    resumed, experiences, _ = build("exssnet", params, iters=30)
    resumed.load_state_dict(state)
    for e in experiences[1:]:
        resumed.train_experience(e)

    requests = [EvalRequest(t, ctx.test_batches(t, 0)) for t in range(3)]
    for a, b in zip(whole.predict(requests), resumed.predict(requests), strict=True):
        assert all(torch.equal(x, y) for x, y in zip(a.predictions, b.predictions, strict=True))
    assert torch.equal(flat_weights(whole), flat_weights(resumed))
    assert whole.extras() == resumed.extras()
    assert whole.bytes() == resumed.bytes()


@pytest.mark.parametrize("over, params, words", [
    ({"scenario": "gnu", "model": "gemresnet18", "benchmark": "split", "dataset": "synthetic"},
     [], "BatchNorm"),
    ({"iters": 1}, ["mask_share=0.5"], "leaves a phase empty"),
    ({"iters": 10}, ["mask_share=0"], "leaves a phase empty"),
    ({"scenario": "gnu"}, ["objective=G"], "superfluous"),
    ({"scenario": "nns"}, [], "does not run in scenario nns"),
])
def test_refusals(over, params, words):
    with pytest.raises(Incompatible, match=words):
        make_plan("exssnet", given(**over), params)

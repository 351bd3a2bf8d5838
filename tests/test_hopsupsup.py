"""HopSupSup and its explicit-mask arm: Storkey storage and recall, bytes, recovery of the mask
bits on a small stream, One-Shot over unit masks, refusals, and resuming from a state_dict."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tempfile
from types import SimpleNamespace

import pytest
import torch

from clbench.context import RunContext
from clbench.errors import ClbenchError, Incompatible
from clbench.method import EvalRequest
from clbench.methods.hopsupsup import HopSupSup, UnitMasks
from clbench.plan import make_plan, with_data
from clbench.supermask.hopfield import (
    UnitMaskNet,
    energy,
    oneshot,
    oneshot_gradients,
    recall,
    store_mask,
    storkey_update,
    total_energy,
)
from clbench.supermask.sizes import (
    break_even_tasks,
    explicit_bytes,
    hopfield_bytes,
    storkey_capacity,
)

from inprocess import Small

BNNET_UNITS = 2 * 2048


def patterns(count: int, d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 2, (count, d), generator=g).float() * 2 - 1


# --------------------------------------------------------------------------- Storkey rule


def test_storkey_rule_is_the_formula_on_a_tiny_matrix():
    x1 = torch.tensor([1.0, -1.0, 1.0, 1.0])
    x2 = torch.tensor([-1.0, -1.0, 1.0, -1.0])
    eye = torch.eye(4)
    psi = storkey_update(torch.zeros(4, 4), x1)
    first = (torch.outer(x1, x1) - eye) / 4  # h = 0 for the first pattern
    assert torch.allclose(psi, first)
    h = first @ x2
    second = first + (torch.outer(x2, x2) - eye - torch.outer(x2, h) - torch.outer(h, x2)) / 4
    assert torch.allclose(storkey_update(psi, x2), second)
    assert torch.allclose(psi, psi.T)


def test_stored_patterns_are_recalled_from_noisy_cues():
    d = 128
    stored = patterns(6, d, seed=1)
    psi = torch.zeros(d, d)
    for x in stored:
        storkey_update(psi, x)
    g = torch.Generator().manual_seed(2)
    for x in stored:
        assert torch.equal(recall(psi, x), x)  # a fixed point
        flips = torch.randperm(d, generator=g)[: d // 10]
        cue = x.clone()
        cue[flips] *= -1
        assert torch.equal(recall(psi, cue), x)
        assert energy(psi, x) < energy(psi, cue)
    # a random state is not a stored pattern and has a higher energy than they do
    other = patterns(1, d, seed=3)[0]
    assert max(float(energy(psi, x)) for x in stored) < float(energy(psi, other))


def test_bytes_are_constant_for_hopfield_and_linear_for_explicit_masks():
    assert hopfield_bytes("layer") == 8 + 4 * 2 * 2048**2 + 4 * BNNET_UNITS + 8 == 33_570_832
    assert hopfield_bytes("layer", symmetric=True) == 8 + 4 * 2048 * 2049 + 4 * BNNET_UNITS + 8
    assert hopfield_bytes("joint") == 8 + 4 * 4096**2 + 4 * BNNET_UNITS + 8 == 67_125_264
    assert hopfield_bytes("joint", symmetric=True) == 8 + 4 * 4096 * 4097 // 2 + 4 * 4096 + 8
    assert explicit_bytes(0) == 8 and explicit_bytes(5) == 8 + 5 * 512
    for memory, tasks, symmetric_tasks in (("layer", 65_569, 32_817), ("joint", 131_105, 65_585)):
        k = break_even_tasks(memory)
        assert k == tasks and break_even_tasks(memory, symmetric=True) == symmetric_tasks
        assert explicit_bytes(k - 1) < hopfield_bytes(memory) <= explicit_bytes(k)
    assert storkey_capacity(2048) == pytest.approx(524.45, abs=0.01)
    assert storkey_capacity(4096) == pytest.approx(1004.2, abs=0.1)
    # never a saving within capacity
    assert break_even_tasks("layer") > 100 * storkey_capacity(2048)
    assert break_even_tasks("joint") > 100 * storkey_capacity(4096)


def test_a_chimera_is_stable_in_per_layer_memories_but_not_in_a_joint_one():
    """Two stored masks A and B of two layers; the state (A's first layer, B's second) is a
    fixed point of per-layer memories (each layer sits on a stored pattern) but not of the joint
    memory, whose energy gradient moves it (the reason ``memory=joint`` recovers whole masks)."""
    d = 256
    a, b = patterns(2, 2 * d, seed=7)
    masks = [[(x[:d] > 0), (x[d:] > 0)] for x in (a, b)]
    memories = {}
    for memory, sizes in (("layer", [d, d]), ("joint", [2 * d])):
        psis = [torch.zeros(n, n) for n in sizes]
        for mask in masks:
            store_mask(psis, mask)
        memories[memory] = psis
    chimera = torch.cat([a[:d], b[d:]])
    layer = memories["layer"]
    assert torch.equal(torch.cat([recall(layer[0], chimera[:d]), recall(layer[1], chimera[d:])]),
                       chimera)
    joint = memories["joint"][0]
    assert not torch.equal(recall(joint, chimera, steps=1), chimera)
    assert torch.equal(recall(joint, a), a) and torch.equal(recall(joint, b), b)
    # per layer the chimera is as deep a minimum as a stored mask; jointly about half as deep
    m = [[(chimera[:d] > 0).float(), (chimera[d:] > 0).float()]] + [
        [x.float() for x in mask] for mask in masks]
    joint_e = [float(total_energy(memories["joint"], mk)) for mk in m]
    layer_e = [float(total_energy(layer, mk)) for mk in m]
    stored_layer = sum(layer_e[1:]) / 2
    assert abs(layer_e[0] - stored_layer) < 0.01 * abs(stored_layer)
    assert joint_e[0] > 0.6 * max(joint_e[1:])


def test_unit_mask_net_uses_bnnets_weights_and_masks_units():
    from clbench.supermask.nets import build_model

    net = UnitMaskNet(784, (2048, 2048), 10, seed=3)
    reference = build_model("bnnet", 10, 3)
    for mine, theirs in zip(net.layers, reference.masked_layers, strict=True):
        assert torch.equal(mine.weight, theirs.weight)
    x = torch.randn(16, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    on = [torch.ones(2048), torch.ones(2048)]
    off = [torch.ones(2048), torch.zeros(2048)]
    assert not torch.allclose(net(x, on), net(x, off))
    assert torch.allclose(net(x, off), torch.zeros(16, 10))  # no unit left: silu(0) = 0
    grouped = net(x.view(2, 8, -1), [torch.ones(2, 2048), torch.ones(2, 2048)])
    assert torch.allclose(grouped[0], net(x[:8], on), atol=1e-5)  # BN statistics per decision


def test_oneshot_gradients_are_the_gradients_of_the_mixture():
    net = UnitMaskNet(784, (2048, 2048), 10, seed=0)
    g = torch.Generator().manual_seed(5)
    stored = [(torch.rand(3, 2048, generator=g) < 0.5).float() for _ in range(2)]
    x = torch.randn(4, 16, 784, generator=g)
    grads = oneshot_gradients(net, x, stored)
    assert grads.shape == (4, 3)
    for d in range(4):  # autograd through alpha itself, one decision at a time
        alpha = torch.full((3,), 1 / 3, requires_grad=True)
        logp = torch.log_softmax(net(x[d], [alpha @ m for m in stored]), -1)
        (want,) = torch.autograd.grad(-(logp.exp() * logp).sum(-1).mean(), alpha)
        assert torch.allclose(grads[d], want, rtol=1e-3, atol=1e-6)
    assert torch.equal(oneshot(net, x, stored), grads.argmin(1))


# --------------------------------------------------------------------------- through the harness


SMALL = Small(dataset="synthetic", tasks=5, iters=20, batch_size=64, eval_batch_size=10,
              eval_at="end")
given, run = SMALL.given, SMALL.run


@pytest.fixture(scope="module")
def hop():
    return run("supsup-hopfield", ["recovery_passes=8"])


@pytest.fixture(scope="module")
def units():
    return run("supsup-units")


def test_paper_defaults():
    plan = make_plan("supsup-hopfield", given(dataset=None, tasks=None, iters=None,
                                              batch_size=None, eval_batch_size=None,
                                              eval_at=None), [])
    c = plan.config
    assert (c.scenario, c.benchmark, c.dataset, c.model, c.tasks, c.epochs, c.iters) == (
        "gnu", "split", "mnist", "bnnet", 5, 1, None)
    assert (c.batch_size, c.eval_batch_size, c.label_view) == (128, 64, "class-incremental")
    assert c.params["recovery_lr"] == 500.0 and c.params["gamma"] == 1.5e-3
    assert c.params["lr"] == 0.1 and c.params["recovery_passes"] == 1
    assert make_plan("supsup-units", given(), []).config.params["infer_batch"] == 64


def test_recovery_recovers_every_tasks_mask_bits(hop):
    rows = hop["extras"]["recovery"][-1]["tasks"]
    assert hop["extras"]["recovery"][-1]["after_tasks"] == 5 and len(rows) == 5
    for task, row in enumerate(rows):
        assert row["nearest"] == task
        assert row["steps"] == 8 * 4  # 40 test images in batches of 10, 8 passes
        assert row["bits"] >= 0.99 and row["steps_to_99"] is not None
        assert row["start_bits"] < row["bits"]  # the mean mask alone is not the answer
        assert len(row["trace"]) == row["steps"] + 1
    assert hop["extras"]["final"]["bits_recovered"] == [r["bits"] for r in rows]
    last = hop["checkpoints"][-1]
    assert min(last["accuracy"]["default"]) > 0.8  # 10 classes: chance is 0.1
    # a task id cannot address the memory: the oracle is recovered the same way
    assert last["accuracy"]["default"] == last["oracle"]


def test_hopfield_bytes_do_not_grow(hop):
    for c in hop["checkpoints"]:
        assert c["bytes"]["fp32"]["bytes"] == hopfield_bytes("joint")
        assert c["bytes"]["fp32-symmetric"]["bytes"] == hopfield_bytes("joint", symmetric=True)
    summary = hop["extras"]["bytes"]
    assert summary["explicit_now"] == 8 + 5 * 512 and summary["break_even_tasks"] == 131_105
    assert summary["memory"] == "joint" and summary["storkey_capacity_per_memory"] == 1004.2


def test_explicit_arm_infers_every_batch_and_learns_the_same_masks(units, hop):
    rows = units["extras"]["inference"][-1]["tasks"]
    assert [r["right"] for r in rows] == [1.0] * 5
    last = units["checkpoints"][-1]
    assert last["accuracy"]["default"] == last["oracle"]
    assert last["bytes"]["bits"]["bytes"] == 8 + 5 * 512
    assert units["extras"]["mask_density"] == hop["extras"]["mask_density"]


@pytest.mark.parametrize("name, over, params, words", [
    ("supsup-hopfield", {"scenario": "gg"}, [], "scenario gg"),
    ("supsup-hopfield", {"model": "lenet"}, [], "model 'lenet'"),
    ("supsup-units", {"eval_batch_size": 1}, [], "eval-batch-size"),
])
def test_refusals(name, over, params, words):
    with pytest.raises(Incompatible, match=words):
        make_plan(name, given(**over), params)


def test_infer_batch_below_two_is_refused():
    with pytest.raises(ClbenchError, match="infer_batch"):
        make_plan("supsup-units", given(), ["infer_batch=1"])


def test_declaring_the_methods_imports_no_torch():
    probe = ("import sys\nimport clbench.methods.hopsupsup as h\n"
             "print(h.HopSupSup.name, h.UnitMasks.name, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         timeout=60, cwd=tempfile.gettempdir(), env=dict(os.environ))
    assert out.stdout.split() == ["supsup-hopfield", "supsup-units", "False"], out.stderr


# --------------------------------------------------------------------------- resuming


def context(name, params):
    plan, source = with_data(make_plan(name, given(tasks=3), params), None, False)
    defs, _ = plan.benchmark.build(source, plan.config.tasks, plan.config.data_seed)
    return RunContext(plan.config, plan.scenario, plan.props, source, defs, torch.device("cpu"))


def learn(method, tasks):
    for t in tasks:
        method.train_experience(SimpleNamespace(current_experience=t, task_label=0))


def ask(method, ctx, learned):
    requests = [EvalRequest(t, ctx.test_batches(t, learned)) for t in range(learned)]
    requests += [EvalRequest(None, ctx.test_batches(t, learned)) for t in range(learned)]
    return [torch.cat(a.predictions) for a in method.predict(requests)]


@pytest.mark.parametrize("cls, params", [(HopSupSup, ["recovery_passes=2"]), (UnitMasks, [])])
def test_restore_then_continue_equals_uninterrupted(cls, params):
    ctx = context(cls.name, params)
    whole = cls(ctx)
    learn(whole, [0, 1])
    ask(whole, ctx, 2)
    learn(whole, [2])

    first = cls(ctx)
    learn(first, [0, 1])
    ask(first, ctx, 2)
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)
    second = cls(ctx)
    second.load_state_dict(torch.load(buffer, weights_only=True))
    learn(second, [2])

    for a, b in zip(ask(whole, ctx, 3), ask(second, ctx, 3), strict=True):
        assert torch.equal(a, b)
    assert whole.extras() == second.extras() and len(whole.extras()["bytes"]) > 0
    for a, b in zip(whole.state_dict().values(), second.state_dict().values(), strict=True):
        if isinstance(a, torch.Tensor):
            assert torch.equal(a, b)
        elif isinstance(a, list) and a and isinstance(a[0], torch.Tensor):
            assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
        else:
            assert a == b

"""Baselines: BatchE, PSP, the bounds and heads, Avalanche strategies by name; their invariants,
params, refusals and bytes formulas, on small streams."""

from __future__ import annotations

import pytest
import torch

import clbench.methods.avalanche_strategies  # noqa: F401 - registers the methods
import clbench.methods.batche  # noqa: F401
import clbench.methods.bounds  # noqa: F401
import clbench.methods.psp  # noqa: F401
from clbench.errors import ClbenchError, Incompatible
from clbench.plan import make_plan

from inprocess import Small

LENET = (784, 300, 100, 10)


SMALL = Small(scenario="gg", dataset="synthetic", tasks=3, iters=15)
given, run, build = SMALL.given, SMALL.run, SMALL.build


def snapshot(tensors):
    return [t.detach().clone() for t in tensors]


def same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


# ------------------------------------------------------------------ every method runs


@pytest.mark.parametrize("method, params, over", [
    ("batche", [], {}),
    ("batche", ["objective=H,G", "output_size=20"], {"scenario": "gnu", "model": "lenet"}),
    ("psp", [], {}),
    ("upper-bound", [], {}),
    ("lower-bound", [], {}),
    ("separate-heads", [], {}),
    ("separate-heads-randw", [], {}),
    ("avalanche:ewc", ["ewc_lambda=1000"], {"scenario": "gns"}),
    ("avalanche:synapticintelligence", [], {"scenario": "gnu"}),
    ("avalanche:lwf", [], {"scenario": "gnu"}),
    ("avalanche:replay", ["mem_size=30"], {"scenario": "gnu"}),
    ("avalanche:gem", ["patterns_per_exp=20"], {"scenario": "gnu"}),
    ("avalanche:packnet", [], {}),
])
def test_each_method_writes_a_complete_record_with_bytes(method, params, over):
    rec = run(method, params, tasks=2, iters=8, **over)
    assert rec["status"] == "complete" and len(rec["diagonal"]) == 2
    last = rec["checkpoints"][-1]
    assert last["bytes"] and all(b["bytes"] > 0 for b in last["bytes"].values())
    for variant in rec["variants"]:
        assert len(last["accuracy"][variant]) == 2


# ------------------------------------------------------------------ BatchE


def test_batche_never_changes_w_after_task_0():
    method, experiences, _ = build("batche", tasks=3, iters=10)
    method.train_experience(experiences[0])
    w0 = snapshot(layer.weight for layer in method.layers)
    members0 = snapshot(v for layer in method.layers for v in (layer.r[0], layer.s[0]))
    for e in experiences[1:]:
        method.train_experience(e)
    assert same(w0, [layer.weight for layer in method.layers])
    assert same(members0, [v for layer in method.layers for v in (layer.r[0], layer.s[0])])
    first = method.layers[0]
    assert not torch.equal(first.r[1].abs(), torch.ones_like(first.r[1]))  # trained from ±1


def test_batche_random_w_is_never_trained_and_has_a_seed_encoding():
    method, experiences, _ = build("batche", ["random_w=true"], tasks=2, iters=5)
    w = snapshot(layer.weight for layer in method.layers)
    for e in experiences:
        method.train_experience(e)
    assert same(w, [layer.weight for layer in method.layers])
    vectors = 4 * 2 * sum(a + b for a, b in zip(LENET, LENET[1:]))
    weights = 4 * sum(a * b for a, b in zip(LENET, LENET[1:]))
    got = method.bytes()
    assert got["fp32"].bytes == weights + vectors and got["seed"].bytes == 8 + vectors


def test_batche_superposition_of_one_member_is_that_member():
    method, experiences, _ = build("batche", tasks=2, iters=3)
    for e in experiences:
        method.train_experience(e)
    x = torch.randn(4, 784)
    method._use(1)
    alone = method._forward(x)
    for layer in method.layers:
        layer.alphas = torch.tensor([[0.0, 1.0]])
    mixed = method._forward(x.unsqueeze(0))[0]
    torch.testing.assert_close(mixed, alone, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------ PSP


def test_psp_contexts_never_change_and_weights_train_on_every_task():
    method, experiences, _ = build("psp", tasks=3, iters=5)
    before = snapshot(method.contexts(0))
    assert all(not c.requires_grad for c in before)
    c = before[0]
    torch.testing.assert_close(c @ c.T, torch.eye(784), atol=1e-4, rtol=0)
    for e in experiences:
        w = snapshot(method.weights)
        method.train_experience(e)
        assert not any(torch.equal(a, b) for a, b in zip(w, method.weights))
    method._contexts.clear()  # re-drawn from the seed: the same contexts
    assert same(before, method.contexts(0))
    assert not same(before[:1], method.contexts(1)[:1])
    got = method.bytes()
    weights = 4 * sum(a * b for a, b in zip(LENET, LENET[1:]))
    assert got["seed"].bytes == weights + 8
    assert got["floats"].bytes == weights + 4 * 3 * (784**2 + 300**2 + 100**2)


def test_psp_refuses_other_scenarios_and_conv_models():
    with pytest.raises(Incompatible, match="scenario gnu"):
        make_plan("psp", given(scenario="gnu"), [])
    with pytest.raises(Incompatible, match="gemresnet18"):
        make_plan("psp", given(model="gemresnet18", benchmark="split"), [])


# ------------------------------------------------------------------ bounds and heads


def test_upper_bound_networks_are_independent():
    method, experiences, _ = build("upper-bound", tasks=3, iters=5)
    method.train_experience(experiences[0])
    first = snapshot(method.nets[0].parameters())
    for e in experiences[1:]:
        method.train_experience(e)
    assert same(first, list(method.nets[0].parameters()))
    ptrs = [{p.data_ptr() for p in n.parameters()} for n in method.nets]
    assert not ptrs[0] & ptrs[1] and not ptrs[1] & ptrs[2]
    per = sum(a * b for a, b in zip(LENET, LENET[1:]))  # bias-free
    assert method.bytes()["fp32"].bytes == 4 * 3 * per


def test_upper_bound_warm_start_starts_from_the_previous_network():
    method, experiences, _ = build("upper-bound", ["warm_start=true"], tasks=2, iters=5)
    method.train_experience(experiences[0])
    start = snapshot(method.nets[0].parameters())
    cold, _, _ = build("upper-bound", tasks=2, iters=5)
    cold.train_experience(experiences[0])
    cold.train_experience(experiences[1])
    method.train_experience(experiences[1])
    assert same(start, list(method.nets[0].parameters()))  # the snapshot is kept
    # one step of RMSprop 1e-4 moves each weight by about 1e-3: the warm net stays near task 0's
    gap = (method.nets[1][1].weight - start[0]).abs().max()
    assert gap < 0.05 < (cold.nets[1][1].weight - start[0]).abs().max()


@pytest.mark.parametrize("name, trunk_trains", [
    ("lower-bound", [True, True]), ("separate-heads", [True, False]),
    ("separate-heads-randw", [False, False]),
])
def test_heads_train_the_trunk_where_declared(name, trunk_trains):
    method, experiences, _ = build(name, tasks=2, iters=5)
    for e, trains in zip(experiences, trunk_trains):
        trunk = snapshot(method._trunk_params())
        method.train_experience(e)
        assert same(trunk, method._trunk_params()) != trains
    trunk = 4 * (784 * 300 + 300 * 100)
    got = method.bytes()
    assert got["fp32"].bytes == trunk + 4 * 2 * 100 * 10
    assert ("seed" in got) == (name == "separate-heads-randw")


# ------------------------------------------------------------------ Avalanche strategies


def test_avalanche_params_pass_through_and_unknown_ones_are_refused():
    method, _, _ = build("avalanche:ewc", ["ewc_lambda=1000", "mode=online",
                                           "decay_factor=0.5"], scenario="gns")
    plugin = method.plugin("EWCPlugin")
    assert (plugin.ewc_lambda, plugin.mode, plugin.decay_factor) == (1000.0, "online", 0.5)
    lwf, _, _ = build("avalanche:lwf", ["alpha=0.5", "temperature=2"], scenario="gnu")
    assert (lwf.plugin("LwFPlugin").lwf.alpha, lwf.plugin("LwFPlugin").lwf.temperature) == (
        0.5, 2.0)
    with pytest.raises(ClbenchError, match="has no param si_lambda"):
        make_plan("avalanche:ewc", given(), ["si_lambda=1"])
    with pytest.raises(ClbenchError, match="ewc_lambda=-1"):
        make_plan("avalanche:ewc", given(), ["ewc_lambda=-1"])


@pytest.mark.parametrize("method, over, params, words", [
    ("avalanche:packnet", {"scenario": "gnu"}, [], "scenario gnu"),
    ("avalanche:ewc", {"scenario": "nns"}, [], "scenario nns"),
    ("avalanche:packnet", {}, ["prune_proportion=2"], "prune_proportion"),
    ("avalanche:packnet", {}, ["post_prune_epochs=2"], "post_prune_epochs"),
    ("batche", {"scenario": "gnu", "model": "gemresnet18", "benchmark": "split"}, [], "MLPs"),
    ("batche", {"scenario": "gnu"}, ["objective=G", "output_size=10"], "superfluous"),
])
def test_refusals(method, over, params, words):
    with pytest.raises(Incompatible, match=words):
        make_plan(method, given(**over), params)


def _task_images(ctx, index):
    data = ctx.task_data(index, "train")
    x, y = data.batch(torch.arange(len(data)))
    return {(bytes(xi.numpy().tobytes()), int(yi)) for xi, yi in zip(x, y)}


def test_ewc_and_replay_see_permuted_images_in_the_class_incremental_view(monkeypatch):
    from avalanche.training.plugins import EWCPlugin

    seen = []
    original = EWCPlugin.compute_importances

    def spy(self, model, criterion, optimizer, dataset, *args, **kwargs):
        seen.append([dataset[i] for i in range(0, len(dataset), 97)])
        return original(self, model, criterion, optimizer, dataset, *args, **kwargs)

    monkeypatch.setattr(EWCPlugin, "compute_importances", spy)
    ewc, experiences, ctx = build("avalanche:ewc", scenario="gnu", tasks=2, iters=5)
    assert ctx.label_view == "class-incremental"
    for e in experiences:
        ewc.train_experience(e)
    for task, samples in enumerate(seen):
        truth = _task_images(ctx, task)
        assert all((x.numpy().tobytes(), y) in truth for x, y, _ in samples)
        assert {y // 10 for _, y, _ in samples} == {task}
    assert ewc.bytes()["fp32"].bytes == 4 * _params(ewc) * (1 + 2 * 2)

    replay, experiences, ctx = build("avalanche:replay", ["mem_size=40"], scenario="gnu",
                                     tasks=2, iters=5)
    for e in experiences:
        replay.train_experience(e)
    buffer = replay.replay.storage_policy.buffer
    truths = [_task_images(ctx, t) for t in range(2)]
    labels = set()
    for i in range(len(buffer)):
        x, y, _ = buffer[i]
        labels.add(y // 10)
        assert (x.numpy().tobytes(), y) in truths[y // 10]
    assert labels == {0, 1} and len(buffer) == 40
    assert replay.bytes()["fp32"].bytes == 4 * _params(replay) + 40 * (784 + 8)


def _params(method):
    return sum(p.numel() for p in method.model.parameters())


def test_packnet_and_gem_bytes():
    packnet, experiences, _ = build("avalanche:packnet", tasks=2, iters=4)
    assert packnet.strategy_kwargs()["prune_proportion"] == [0.5, 0.0]
    for e in experiences:
        packnet.train_experience(e)
    assert packnet.bytes()["fp32"].bytes == 5 * _params(packnet)
    gem, experiences, _ = build("avalanche:gem", ["patterns_per_exp=16"], scenario="gnu",
                                tasks=2, iters=4)
    for e in experiences:
        gem.train_experience(e)
    assert gem.bytes()["fp32"].bytes == 4 * _params(gem) + 2 * 16 * (784 + 8)

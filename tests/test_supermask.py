"""Tests of the supermask library (clbench/supermask/): masks, fixed weights, store, modes, task
inference, bytes."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from clbench import supermask
from clbench.errors import Incompatible
from clbench.supermask import bits
from clbench.supermask.bits import PackedMaskStore, pack_bits, unpack_bits
from clbench.supermask.inference import (
    ScoreBank,
    alpha_gradients,
    decision_inputs,
    infer_tasks,
    nns_choice,
    nns_gradient,
)
from clbench.supermask.layers import er_density, kept_count
from clbench.supermask.nets import (
    GEMResNet18,
    MaskedResNet,
    SupermaskMLP,
    build_model,
    model_from_state,
)
from clbench.supermask.sizes import bits_bytes, sparse_bytes
from clbench.supermask.supernet import SupermaskNet

LIBRARY = {str(p) for p in Path(supermask.__file__).parent.glob("*.py")}


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _tiny(seed: int = 0, out: int = 16, bn: bool = False, **kw: object) -> SupermaskMLP:
    act = "swish" if bn else "relu"
    return SupermaskMLP(12, (9, 7), out, seed, activation=act, batch_norm=bn, **kw)


def _commit_random(net: SupermaskNet, k: int, gen: torch.Generator) -> list[torch.Tensor]:
    """Commit k tasks with random scores; returns their flat masks as recorded before packing."""
    masks = []
    for _ in range(k):
        net.new_task(gen)
        masks.append(net.current_mask().clone())
        net.commit_task()
    return masks


def _per_layer(net: SupermaskNet, masks: list[torch.Tensor]) -> list[torch.Tensor]:
    """Flat masks → per layer [k, *weight shape] (float of the net's dtype)."""
    out, start = [], 0
    for layer in net.masked_layers:
        n = layer.numel
        stacked = torch.stack([m[start : start + n] for m in masks]).to(layer.weight.dtype)
        out.append(stacked.view(len(masks), *layer.weight.shape))
        start += n
    return out


# --------------------------------------------------------------------------- bits and store


@pytest.mark.parametrize("n", [1, 7, 8, 9, 13, 64, 1001])
def test_pack_unpack_round_trip(n: int) -> None:
    g = torch.Generator().manual_seed(n)
    mask = torch.rand(3, n, generator=g) < 0.5
    packed = pack_bits(mask)
    assert packed.dtype == torch.uint8 and packed.shape == (3, math.ceil(n / 8))
    assert torch.equal(unpack_bits(packed, n), mask)
    assert torch.equal(unpack_bits(packed, n, torch.float32), mask.float())


def test_pack_bit_order_is_msb_first() -> None:
    mask = torch.tensor([1, 0, 0, 0, 0, 0, 0, 1, 1], dtype=torch.bool)
    assert pack_bits(mask).tolist() == [129, 128]


def test_store_unaligned_layers_and_growth() -> None:
    sizes = [5, 11, 3]
    store = PackedMaskStore(sizes)
    assert store.row_bytes == 3
    g = torch.Generator().manual_seed(0)
    masks = [torch.rand(19, generator=g) < 0.5 for _ in range(9)]  # grows past 4 and 8
    for m in masks:
        store.append(m)
    assert store.count == 9 and store.nbytes == 27
    stacked = torch.stack(masks)
    for layer, (lo, n) in enumerate(zip(store.offsets, sizes, strict=True)):
        assert torch.equal(store.layer_masks(layer, 2, 7), stacked[2:7, lo : lo + n].float())
        assert store.layer_counts(layer).tolist() == stacked[:, lo : lo + n].sum(1).tolist()
    assert torch.equal(store.mask(8), masks[8])


# --------------------------------------------------------------------------- weights and masks


def test_weights_are_signed_kaiming_constants_and_never_change() -> None:
    net = _tiny(seed=3)
    gen = torch.Generator().manual_seed(3)
    for layer in net.masked_layers:
        draw = torch.empty_like(layer.weight)
        torch.nn.init.kaiming_uniform_(draw, a=math.sqrt(5), generator=gen)
        scale = math.sqrt(2 / layer.weight.shape[1])
        assert torch.equal(layer.weight, torch.where(draw >= 0, scale, -scale))
    assert not any(n.endswith("weight") for n, _ in net.named_parameters())
    assert not any(k.endswith("weight") for k in net.state_dict())
    before = [m.weight.clone() for m in net.masked_layers]
    net.new_task(torch.Generator().manual_seed(0))
    scores0 = [p.detach().clone() for p in net.score_parameters()]
    opt = torch.optim.RMSprop(net.score_parameters(), lr=1e-2)
    x, y = torch.randn(32, 12), torch.randint(0, 10, (32,))
    for _ in range(5):
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
    assert all(torch.equal(b, m.weight) for b, m in zip(before, net.masked_layers, strict=True))
    assert any(not torch.equal(s, p) for s, p in zip(scores0, net.score_parameters(), strict=True))


def test_weights_independent_of_tasks_and_global_rng() -> None:
    a = build_model("lenet", 100, seed=7)
    _commit_random(a, 3, torch.Generator().manual_seed(1))
    a.new_task()  # global RNG
    torch.manual_seed(123)
    b = build_model("lenet", 100, seed=7)
    c = build_model("lenet", 100, seed=8)
    for la, lb, lc in zip(a.masked_layers, b.masked_layers, c.masked_layers, strict=True):
        assert torch.equal(la.weight, lb.weight)
        assert not torch.equal(la.weight, lc.weight)


@pytest.mark.parametrize("kind", ["threshold", "topk"])
def test_masks_are_binary(kind: str) -> None:
    kw = {"mask": "topk", "density": 0.3} if kind == "topk" else {}
    net = _tiny(**kw)
    masks = _commit_random(net, 2, torch.Generator().manual_seed(0))
    net.new_task(torch.Generator().manual_seed(5))
    for layer in net.masked_layers:
        ratio = layer.effective_weight() / layer.weight
        assert bool(((ratio == 0) | (ratio == 1)).all())
        assert 0 < float(ratio.detach().mean()) < 1
    for i, m in enumerate(masks):
        assert torch.equal(net.store.mask(i), m)


def test_topk_density_exact_per_layer() -> None:
    net = _tiny(mask="topk", density=0.3)
    masks = _commit_random(net, 2, torch.Generator().manual_seed(0))
    per = _per_layer(net, masks)
    for layer, m in zip(net.masked_layers, per, strict=True):
        expect = layer.numel - math.floor(0.7 * layer.numel)
        assert layer.kept == expect
        assert m.flatten(1).sum(1).tolist() == [expect, expect]
    sizes = [108, 63, 112]
    kept = [108 - math.floor(0.7 * 108), 63 - math.floor(0.7 * 63), 112 - math.floor(0.7 * 112)]
    assert net.overall_density == pytest.approx(sum(kept) / sum(sizes))


def test_threshold_straight_through_gradient() -> None:
    net = SupermaskMLP(4, (), 3, seed=0)  # one layer: y = x (W ⊙ M)ᵀ
    net.new_task(torch.Generator().manual_seed(0))
    x = torch.randn(5, 4)
    net(x).sum().backward()
    w = net.masked_layers[0].weight
    expect = w * x.sum(0).expand(3, 4)  # ∂L/∂M = ∂L/∂(W⊙M) ⊙ W, passed to the scores
    assert torch.allclose(net.score_parameters()[0].grad, expect)


def test_topk_straight_through_reaches_scores() -> None:
    net = _tiny(mask="topk", density=0.5)
    net.new_task(torch.Generator().manual_seed(0))
    F.cross_entropy(net(torch.randn(8, 12)), torch.randint(0, 10, (8,))).backward()
    grads = [p.grad for p in net.score_parameters()]
    # unmasked entries get a gradient too (straight-through), not only kept ones
    layer = net.masked_layers[0]
    off = (layer.effective_weight() == 0) & (grads[0] != 0)
    assert bool(off.any())


def test_er_budget_formula_on_known_layers() -> None:
    assert er_density(40, 20, 3, 1) == pytest.approx(60 / 7200)
    assert er_density(300, 784, 1, 2) == pytest.approx(2 * 1084 / 235200)
    assert er_density(5, 10, 1, 8) == 0.5  # capped
    net = build_model("gemresnet18", 5, seed=0, mask="topk", er_scale=1)
    conv = next(m for m in net.masked_layers if tuple(m.weight.shape) == (40, 20, 3, 3))
    assert conv.density == pytest.approx(60 / 7200)
    assert conv.kept == kept_count(7200, 60 / 7200) == 60
    total = sum(m.kept for m in net.masked_layers)
    assert net.overall_density == pytest.approx(total / net.num_weights)
    assert 0.0025 < net.overall_density < 0.0027  # ≈ 0.26 % (reference table, S = 1)


def test_transfer_init_is_mean_of_earlier_scores() -> None:
    net = _tiny(init="transfer")
    gen = torch.Generator().manual_seed(0)
    finals = []
    for t in range(3):
        net.new_task(gen)
        if t == 1:
            assert all(
                torch.equal(p, f) for p, f in zip(net.score_parameters(), finals[0], strict=True)
            )
        if t == 2:
            for p, f0, f1 in zip(net.score_parameters(), *finals, strict=True):
                assert torch.allclose(p, (f0 + f1) / 2)
        with torch.no_grad():
            for p in net.score_parameters():
                p.add_(torch.randn(p.shape, generator=gen))
        finals.append([p.detach().clone() for p in net.score_parameters()])
        net.commit_task()
    plain = _tiny(init="random")
    plain.new_task(torch.Generator().manual_seed(0))
    plain.commit_task()
    plain.new_task(torch.Generator().manual_seed(9))
    assert not torch.equal(plain.score_parameters()[0], net._transfer_mean[0])


def test_per_task_bn_statistics_are_separate() -> None:
    net = build_model("gemresnet18", 5, seed=0)
    gen = torch.Generator().manual_seed(0)
    xa = torch.randn(4, 3, 32, 32, generator=gen) + 2
    xb = torch.randn(4, 3, 32, 32, generator=gen) - 2
    net.train()
    net.new_task(gen)
    net(xa)
    net.commit_task()
    net.eval()
    net.use_task(0)
    out_a = net(xa)
    stats_a = [bn.means[0].clone() for bn in net.task_bns]
    net.train()
    net.new_task(gen)
    net(xb)
    net.commit_task()
    net.eval()
    net.use_task(0)
    assert all(torch.equal(s, bn.means[0]) for s, bn in zip(stats_a, net.task_bns, strict=True))
    assert not torch.allclose(net.task_bns[0].means[0], net.task_bns[0].means[1])
    assert torch.allclose(net(xa), out_a)
    with pytest.raises(Incompatible):
        net.use_mean()


def test_modes_use_task_alphas_mean() -> None:
    net = _tiny().double()
    masks = _per_layer(net, _commit_random(net, 3, torch.Generator().manual_seed(0)))
    x = torch.randn(5, 12, dtype=torch.float64)

    def explicit(coef: torch.Tensor) -> torch.Tensor:
        h = x
        for i, layer in enumerate(net.masked_layers):
            h = h @ (layer.weight * torch.einsum("k,koi->oi", coef, masks[i])).T
            h = F.relu(h) if i < 2 else h
        return h

    net.use_task(1)
    assert torch.allclose(net(x), explicit(torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)))
    alphas = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64)
    net.use_alphas(alphas)
    assert torch.allclose(net(x), explicit(alphas))
    net.use_mean()
    assert torch.allclose(net(x), explicit(torch.full((3,), 1 / 3, dtype=torch.float64)))
    assert net.mode == ("mean", None)


def test_state_round_trip() -> None:
    net = _tiny(mask="topk", density=0.4, init="transfer")
    _commit_random(net, 2, torch.Generator().manual_seed(0))
    net.new_task(torch.Generator().manual_seed(1))
    copy = model_from_state(net.get_state())
    assert torch.equal(copy.store.packed, net.store.packed)
    x = torch.randn(4, 12)
    assert torch.equal(copy(x), net(x))
    copy.use_task(0)
    net.use_task(0)
    assert torch.equal(copy(x), net(x))


# --------------------------------------------------------------------------- task inference


def _explicit_alpha_grads(
    net: SupermaskMLP,
    masks: list[torch.Tensor],
    x: torch.Tensor,
    sizes: list[int],
    objective: str,
    real: int,
    coeffs: torch.Tensor,
) -> torch.Tensor:
    """Autograd on an explicit α-parameterised copy of the net, one decision at a time."""
    out, start = [], 0
    last = len(net.masked_layers) - 1
    for d, n in enumerate(sizes):
        h = x[start : start + n]
        start += n
        alpha = coeffs[d].clone().requires_grad_(True)
        for i, layer in enumerate(net.masked_layers):
            h = h @ (layer.weight * torch.einsum("k,koi->oi", alpha, masks[i])).T
            if i < last:
                if net.batch_norm:
                    mu = h.mean(0)
                    h = (h - mu) / torch.sqrt((h - mu).square().mean(0) + 1e-5)
                h = F.silu(h) if net.batch_norm else F.relu(h)
        if objective == "H":
            p = torch.softmax(h, 1)
            obj = -(p * torch.log_softmax(h, 1)).sum(1).mean()
        else:
            obj = torch.logsumexp(torch.cat([h[:, :real].detach(), h[:, real:]], 1), 1).mean()
        out.append(torch.autograd.grad(obj, alpha)[0])
    return torch.stack(out)


CASES = [
    (objective, b, strategy, False)
    for objective in ("H", "G")
    for b in (1, 3)
    for strategy in ("rows", "outer")
] + [("H", 3, "rows", True), ("G", 3, "outer", True)]


@pytest.mark.parametrize(("objective", "b", "strategy", "bn"), CASES)
def test_alpha_gradients_equal_autograd(objective: str, b: int, strategy: str, bn: bool) -> None:
    net = _tiny(seed=1, bn=bn).double()
    k, d = 5, 4
    masks = _per_layer(net, _commit_random(net, k, torch.Generator().manual_seed(2)))
    x = torch.randn(d * b, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    got = alpha_gradients(net, x, b, objective=objective, real_classes=10, strategy=strategy)
    uniform = torch.full((d, k), 1 / k, dtype=torch.float64)
    want = _explicit_alpha_grads(net, masks, x, [b] * d, objective, 10, uniform)
    assert got.shape == (d, k)
    assert torch.allclose(got, want, rtol=1e-9, atol=1e-12)
    # per-decision candidate sets (Binary) and ragged decisions
    cand = torch.rand(d, k, generator=torch.Generator().manual_seed(4)) < 0.6
    cand[:, 0] = True
    sizes = [b, 2 if bn else 1, b, 2] if b > 1 else [1] * d
    xs = x[: sum(sizes)]
    got = alpha_gradients(
        net, xs, sizes, objective=objective, real_classes=10, candidates=cand, strategy=strategy
    )
    coeffs = cand.double() / cand.sum(1, keepdim=True)
    want = _explicit_alpha_grads(net, masks, xs, sizes, objective, 10, coeffs)
    assert torch.allclose(got, want, rtol=1e-9, atol=1e-12)


def test_oneshot_of_one_or_two_images_per_decision_matches_the_dense_gradients() -> None:
    """The column-grouped One-Shot (about one image per decision) chooses what the dense
    α-gradients choose: inputs with a common background value, decisions of one and two
    images, a budget that forces many blocks, mask chunks and column groups, and the default."""
    gen = torch.Generator().manual_seed(3)
    net = build_model("lenet", 100, seed=0)
    _commit_random(net, 12, gen)
    x = torch.randn(30, 784, generator=gen)
    x[x < 0.8] = -0.4242  # a normalised background, about 80 % of the pixels
    sizes = [1, 2, 1, 1, 2, 1, 1, 1, 2, 1, 1, 2, 1, 1, 1, 2, 1, 1, 1, 2, 1, 1, 2]
    assert sum(sizes) == 30
    dense = alpha_gradients(net, x, sizes)
    low = dense.topk(2, dim=1, largest=False).values
    clear = (low[:, 1] - low[:, 0]) > 1e-5  # near-ties may fall either way in float32
    assert clear.sum() >= 20
    for memory_mb in (1, 384):
        got = infer_tasks(net, x, sizes, memory_mb=memory_mb)
        assert torch.equal(got[clear], dense.argmin(1)[clear]), memory_mb


def test_alpha_gradients_small_memory_budget_matches() -> None:
    net = build_model("lenet", 100, seed=0)
    _commit_random(net, 6, torch.Generator().manual_seed(0))
    x = torch.randn(40, 784, generator=torch.Generator().manual_seed(1))
    big = alpha_gradients(net, x, 2, memory_mb=256)
    small = alpha_gradients(net, x, 2, memory_mb=1, strategy="rows")
    assert torch.allclose(big, small, rtol=1e-4, atol=1e-6)
    # One-Shot keeps a running argmin over mask chunks (1 MB: one mask per chunk)
    assert torch.equal(infer_tasks(net, x, 2, memory_mb=1), big.argmin(1))
    assert torch.equal(infer_tasks(net, x, 2), big.argmin(1))


def test_g_refused_without_superfluous_neurons() -> None:
    net = _tiny(out=10)
    _commit_random(net, 2, torch.Generator().manual_seed(0))
    x = torch.randn(3, 12)
    with pytest.raises(ValueError):
        alpha_gradients(net, x, 1, objective="G", real_classes=10)
    with pytest.raises(ValueError):
        infer_tasks(net, x, 1, objective="G")
    alpha_gradients(net, x, 1, objective="H", real_classes=10)


def test_inference_refusals() -> None:
    bnnet = _tiny(bn=True)
    _commit_random(bnnet, 2, torch.Generator().manual_seed(0))
    with pytest.raises(Incompatible):
        infer_tasks(bnnet, torch.randn(3, 12), 1)
    resnet = build_model("gemresnet18", 5, seed=0)
    _commit_random(resnet, 1, torch.Generator().manual_seed(0))
    with pytest.raises(Incompatible):
        infer_tasks(resnet, torch.randn(2, 3, 32, 32), 1)


Sampler = Callable[[int, int], tuple[torch.Tensor, torch.Tensor]]


def _synthetic_tasks(tasks: int, gen: torch.Generator) -> tuple[SupermaskMLP, Sampler]:
    means = torch.randn(10, 32, generator=gen) * 2
    perms = [torch.randperm(32, generator=gen) for _ in range(tasks)]

    def sample(n: int, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(0, 10, (n,), generator=gen)
        return (means[y] + torch.randn(n, 32, generator=gen))[:, perms[t]], y

    net = SupermaskMLP(32, (64, 64), 20, seed=1)
    for t in range(tasks):
        net.new_task(gen)
        opt = torch.optim.RMSprop(net.score_parameters(), lr=1e-2)
        for _ in range(200):
            x, y = sample(64, t)
            opt.zero_grad()
            F.cross_entropy(net(x), y).backward()
            opt.step()
        net.commit_task()
    return net, sample


def test_oneshot_and_binary_find_the_task() -> None:
    gen = torch.Generator().manual_seed(0)
    net, sample = _synthetic_tasks(4, gen)
    x_test, y_test = sample(400, 2)
    net.use_task(2)
    assert (net(x_test).argmax(1) == y_test).float().mean() > 0.9
    b = 8
    batches = [sample(20, t)[0] for t in range(4) for _ in range(25)]
    truth = torch.tensor([t for t in range(4) for _ in range(25)])
    x, sizes = decision_inputs(batches, b)
    assert sizes == [b] * 100
    for objective in ("H", "G"):
        one = infer_tasks(net, x, sizes, objective=objective, real_classes=10)
        two = infer_tasks(net, x, sizes, method="binary", objective=objective, real_classes=10)
        assert (one == truth).float().mean() >= 0.9
        assert (two == truth).float().mean() >= 0.9
        assert (one == two).float().mean() >= 0.85


def test_binary_single_mask_and_rounds() -> None:
    net = _tiny()
    _commit_random(net, 1, torch.Generator().manual_seed(0))
    assert infer_tasks(net, torch.randn(3, 12), 1, method="binary").tolist() == [0, 0, 0]


def test_nns_bank_gradient_and_rule() -> None:
    net = _tiny().double()
    bank = ScoreBank(net)
    gen = torch.Generator().manual_seed(0)
    bank.grow(2, gen)
    bank.select(1)
    assert net.score_parameters()[0] is bank.parameters(1)[0]
    x = torch.randn(16, 12, dtype=torch.float64, generator=gen)
    g = nns_gradient(net, bank, x, 5, gen)
    assert bank.count == 5 and g.shape == (5,)
    flat = [
        torch.cat([(p.detach() >= 0).reshape(-1) for p in bank.parameters(i)]) for i in range(5)
    ]
    want = _explicit_alpha_grads(
        net, _per_layer(net, flat), x, [16], "H", 10, torch.full((1, 5), 0.2, dtype=torch.float64)
    )
    assert torch.allclose(g, want[0], rtol=1e-9, atol=1e-12)
    assert net.mode == ("scores", None)  # inference did not change the training mode
    assert nns_choice(torch.zeros(5)) is None  # 5 · 1/5 = 1 < 1.125: allocate
    assert nns_choice(torch.tensor([0.0, -3.0, 0.0, 0.0, 0.0])) == 1
    assert bank.nbytes == 4 * net.num_weights * 5


# --------------------------------------------------------------------------- bytes


def test_bytes_formulas_by_hand() -> None:
    net = SupermaskMLP(4, (), 3, seed=0, mask="topk", density=0.5)  # one layer [3, 4]: P = 12
    assert bits_bytes(net) == 8 and sparse_bytes(net) == 8
    _commit_random(net, 2, torch.Generator().manual_seed(0))  # 6 kept of 12 each
    assert bits_bytes(net) == 8 + 2 * 2
    assert sparse_bytes(net) == 8 + 2 * (2 * 6 + 4 * 5)
    two = SupermaskMLP(4, (3,), 2, seed=0)  # layers [3, 4], [2, 3]: P = 18 → 3 bytes
    for kept in ([1] * 12 + [1, 0, 0, 1, 0, 0], [0] * 18):
        two.new_task()
        with torch.no_grad():
            flat = torch.tensor(kept, dtype=torch.float32) * 2 - 1
            two.masked_layers[0].scores.copy_(flat[:12].view(3, 4))
            two.masked_layers[1].scores.copy_(flat[12:].view(2, 3))
        two.commit_task()
    assert bits_bytes(two) == 8 + 2 * 3
    # task 0: 2·12 + 4·5 + 2·2 + 4·4; task 1: 0 + 4·5 + 0 + 4·4
    assert sparse_bytes(two) == 8 + (24 + 20 + 4 + 16) + (20 + 16)


def test_bits_bytes_with_bn_statistics() -> None:
    net = build_model("gemresnet18", 5, seed=0)
    assert net.num_weights == 1_090_940 and net.bn_channels == 1500
    _commit_random(net, 1, torch.Generator().manual_seed(0))
    assert bits_bytes(net) == 8 + 136_368 + 1500 * 8
    assert sparse_bytes(net) > 1500 * 8


# --------------------------------------------------------------------------- devices
# No GPU here. The meta device stands in for one: an op mixing meta and CPU tensors raises, so the
# life cycle below fails on any tensor left on, or created on, the CPU. Values are meaningless on
# meta: no .item()/.tolist()/bool(), hence equal-size decisions and no Binary/candidates there;
# the audit of tensor factories covers those paths on the CPU.


def test_life_cycle_on_another_device() -> None:
    meta = torch.device("meta")
    gen = torch.Generator().manual_seed(0)  # a CPU generator, as the harness gives
    net = _tiny(init="transfer")
    _commit_random(net, 2, gen)
    net.double()  # conversions other than moves: the store stays packed bytes
    assert net.store.packed.dtype == torch.uint8 and net._transfer_mean[0].dtype == torch.float64
    net.to(meta)
    assert net.store.packed.device == meta and net._transfer_mean[0].device == meta
    assert all(m._weff.device == meta for m in net.masked_layers)  # W ⊙ M of use_task(1) redone
    x = torch.randn(6, 12, dtype=torch.float64).to(meta)
    y = torch.zeros(6, dtype=torch.long, device=meta)
    assert net(x).device == meta
    net.new_task(gen)
    F.cross_entropy(net(x), y).backward()
    assert all(p.device == meta and p.grad.device == meta for p in net.score_parameters())
    assert net.commit_task() == 2 and net.store.packed.device == meta
    net.use_task(0)
    assert net(x).device == meta
    net.use_mean()
    assert net(x).device == meta
    alphas = torch.full((3,), 1 / 3, dtype=torch.float64, device=meta, requires_grad=True)
    net.use_alphas(alphas)
    net(x).sum().backward()
    assert alphas.grad.device == meta
    for strategy in ("rows", "outer"):
        for objective in ("H", "G"):
            g = alpha_gradients(net, x, 2, objective=objective, real_classes=10, strategy=strategy)
            assert g.device == meta and g.shape == (3, 3)
    tasks = infer_tasks(net, x, 3)
    assert tasks.device == meta and tasks.shape == (2,) and tasks.dtype == torch.long
    assert bits_bytes(net) == 8 + 3 * net.store.row_bytes
    # a score bank made before the move follows the net; new rows are drawn on the CPU
    plain = _tiny(seed=1)
    bank = ScoreBank(plain)
    bank.grow(2, gen)
    bank.select(0)
    plain.to(meta)
    assert bank.parameters(0)[0] is plain.score_parameters()[0]
    assert nns_gradient(plain, bank, x.float(), 4, gen).device == meta
    assert all(p.device == meta for i in range(4) for p in bank.parameters(i))
    bank.select(3)
    F.cross_entropy(plain(x.float()), y).backward()
    # per-task BN statistics are made on, and follow, the module's device
    resnet = MaskedResNet(GEMResNet18, 5, 0, nf=2).to(meta)
    resnet.train()
    xi = torch.zeros(4, 3, 8, 8, device=meta)
    for _ in range(2):
        resnet.new_task(gen)
        resnet(xi).sum().backward()
        resnet.commit_task()
    assert all(t.device == meta for bn in resnet.task_bns for t in bn.means + bn.vars)
    resnet.eval()
    resnet.use_task(0)
    assert resnet(xi).device == meta and resnet.store.packed.device == meta


FACTORIES = ("zeros", "ones", "full", "empty", "arange", "tensor", "as_tensor", "rand", "randn",
             "randint", "randperm", "eye", "linspace")


def test_tensor_factories_name_their_device(monkeypatch: pytest.MonkeyPatch) -> None:
    """After construction (which follows torch's default device), every tensor the library
    makes says where: the paths meta cannot run (ragged decisions, Binary, candidates, bank,
    bytes, checkpoints) on the CPU, recording factory calls from the module without a device."""
    gen = torch.Generator().manual_seed(0)
    net = _tiny(init="transfer")
    bnnet = _tiny(bn=True)
    bank = ScoreBank(_tiny(seed=2))
    resnet = MaskedResNet(GEMResNet18, 5, 0, nf=2)
    implicit: list[str] = []
    for name in FACTORIES:
        real = getattr(torch, name)

        def factory(*args: object, _real: Callable = real, _name: str = name, **kw: object):
            caller = sys._getframe(1)
            if (
                caller.f_code.co_filename in LIBRARY
                and caller.f_code.co_name != "__init__"
                and kw.get("device") is None
            ):
                implicit.append(f"torch.{_name} in {caller.f_code.co_name}:{caller.f_lineno}")
            return _real(*args, **kw)

        monkeypatch.setattr(torch, name, factory)
    bits._bit_table.cache_clear()
    _commit_random(net, 4, gen)
    _commit_random(bnnet, 2, gen)
    x = torch.randn(8, 12, generator=gen)
    sizes = [1, 3, 2, 2]
    cand = torch.rand(4, 4, generator=gen) < 0.7
    cand[:, 0] = True
    for strategy in ("rows", "outer"):
        alpha_gradients(net, x, sizes, strategy=strategy, candidates=cand)
    infer_tasks(net, x, sizes)
    infer_tasks(net, x, 2, method="binary", objective="G", real_classes=10)
    infer_tasks(bnnet, x, [2, 3, 3], method="binary")
    net.use_mean()
    net.use_alphas(torch.full((4,), 0.25))
    net.new_task(gen)
    model_from_state(net.get_state())
    nns_gradient(bank.net, bank, x, 3, gen)
    bank.select(1)
    resnet.new_task(gen)
    resnet(torch.randn(2, 3, 8, 8, generator=gen))
    resnet.commit_task()
    sparse_bytes(net)
    assert implicit == []

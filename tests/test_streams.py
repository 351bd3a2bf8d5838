"""Benchmark families, label views and the fast loader: the stream rules of the paper."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from clbench.benchmark import BatchTransform
from clbench.config import RunConfig
from clbench.context import RunContext
from clbench.data import load_source
from clbench.errors import ClbenchError
from clbench.scenarios.permuted import Permuted, permutation
from clbench.scenarios.rotated import Rotate, Rotated, angle
from clbench.scenarios.split import Split
from clbench.scenarios.taxonomy import GG, GNU, SCENARIOS


def make_ctx(benchmark=Permuted, tasks=3, view="task", scenario=GG, seed=0, val=0.0,
             dataset="synthetic", **over):
    source = load_source(dataset)
    props = benchmark.properties(source.info, tasks)
    defs, _ = benchmark.build(source, tasks, seed)
    fields = dict(method="m", scenario=scenario.name, benchmark=benchmark.name, dataset=dataset,
                  data_identity=source.identity, model="lenet", params={}, density=None,
                  label_view=view, tasks=tasks, iters=4, epochs=None, batch_size=16,
                  eval_batch_size=32, seed=seed, data_seed=seed, threads=1, device="cpu",
                  eval_at=[tasks], val_fraction=val)
    fields.update(over)
    return RunContext(RunConfig(**fields), scenario, props, source, defs, torch.device("cpu"))


def test_permutation_rule_matches_supsup():
    for task in (0, 1, 7):
        expected = np.random.RandomState(task + 5).permutation(784)
        assert np.array_equal(permutation(task, 5, 784).numpy(), expected)
    assert not torch.equal(permutation(0, 5, 784), torch.arange(784))  # task 0 is permuted too
    assert not torch.equal(permutation(0, 5, 784), permutation(1, 5, 784))
    assert torch.equal(permutation(3, 5, 784), permutation(3, 5, 784))


def test_permuted_batches_are_permuted_normalised_pixels():
    ctx = make_ctx(tasks=2, seed=4)
    data = ctx.task_data(1, "test")
    x, _ = data.batch(torch.arange(5))
    raw = load_source("synthetic").test.x[:5].float().div(255).flatten(1)
    expected = (raw[:, permutation(1, 4, 784)] - 0.5004) / 0.3256
    assert torch.allclose(x.flatten(1), expected, atol=1e-6)


def test_rotation_angles_and_identity():
    assert [angle(t, 36) for t in (0, 1, 35)] == [0, 10, 350]
    assert [angle(t, 4) for t in range(4)] == [0, 90, 180, 270]
    x = torch.rand(3, 1, 28, 28)
    assert torch.equal(Rotate((0.0,), (1.0,), 0).change(x.clone(), train=False, generator=None), x)
    quarter = Rotate((0.0,), (1.0,), 90).change(x, train=False, generator=None)
    assert torch.equal(quarter, torch.rot90(x, 1, dims=(-2, -1)))
    # a general angle agrees with the exact quarter turns' direction (counter-clockwise, as PIL)
    img = torch.zeros(1, 1, 29, 29)
    img[0, 0, 14, 20:26] = 1.0  # a bar pointing right from the centre
    turned = Rotate((0.0,), (1.0,), 80).change(img, train=False, generator=None)
    ys, xs = torch.nonzero(turned[0, 0] > 0.5, as_tuple=True)
    assert ys.float().mean() < 12 and abs(xs.float().mean() - 14) < 3  # now it points up
    with pytest.raises(ClbenchError, match="at most 360"):
        Rotated.properties(load_source("synthetic").info, 361)


def test_split_class_groups_and_labels():
    source = load_source("synthetic")
    defs, info = Split.build(source, 5, 0)
    assert info["class_order"] == list(range(10))
    for t, task in enumerate(defs):
        assert task.info["classes"] == [2 * t, 2 * t + 1]
        ys = source.train.y[task.train_index]
        assert set(ys.tolist()) == {2 * t, 2 * t + 1}
        assert set(task.label_map[ys].tolist()) == {0, 1}
    with pytest.raises(ClbenchError, match="at most 5 split tasks"):
        Split.properties(source.info, 6)


def test_labels_are_per_task_and_class_incremental_view_offsets_them():
    task_view = make_ctx(Split, tasks=5)
    incremental = make_ctx(Split, tasks=5, view="class-incremental", scenario=GNU)
    for t in range(5):
        per_task = task_view.task_data(t, "train").labels
        offset = incremental.task_data(t, "train").labels
        assert set(per_task.tolist()) == {0, 1}
        assert torch.equal(offset, per_task + 2 * t)
        assert incremental.classes_of(t) == {2 * t, 2 * t + 1}
    assert incremental.outputs == 10 and task_view.outputs == 2
    assert incremental.task_data(3, "train").task_label == 0  # the view hides the task


def test_single_samples_equal_the_batch_path():
    ctx = make_ctx(Split, tasks=5, view="class-incremental", scenario=GNU)
    data = ctx.task_data(2, "train")
    xb, yb = data.batch(torch.tensor([0, 3, 9]))
    for k, i in enumerate((0, 3, 9)):
        x, y, t = data[i]
        assert torch.equal(x, xb[k]) and y == int(yb[k]) and t == 0


def test_train_loader_iterations_and_order_are_seeded():
    ctx = make_ctx(tasks=2)
    first = [y for _, y, _ in ctx.train_loader(0)]
    again = [y for _, y, _ in make_ctx(tasks=2).train_loader(0)]
    assert len(first) == 4 and all(torch.equal(a, b) for a, b in zip(first, again))
    other = [y for _, y, _ in make_ctx(tasks=2, seed=1).train_loader(0)]
    assert not all(torch.equal(a, b) for a, b in zip(first, other))
    # iterations past one pass reshuffle and keep going: 600 samples, batch 16, 50 batches
    loader = make_ctx(tasks=1, iters=50).train_loader(0)
    sizes = [len(y) for _, y, _ in loader]
    assert len(sizes) == 50 and sizes[37] == 600 - 37 * 16


def test_validation_split_is_held_out():
    ctx = make_ctx(tasks=1, val=0.25)
    train, val = ctx.task_data(0, "train"), ctx.task_data(0, "val")
    assert len(val) == 150 and len(train) == 450
    assert not set(train.rows.tolist()) & set(val.rows.tolist())


def test_test_order_depends_on_checkpoint_and_task_but_is_reproducible():
    ctx = make_ctx(tasks=2)
    a, b = ctx.test_batches(0, 1), ctx.test_batches(0, 2)
    assert not torch.equal(a.labels(0), b.labels(0)) or not torch.equal(a[0], b[0])
    assert torch.equal(ctx.test_batches(0, 1)[0], a[0])
    heads = a.heads(1)
    assert len(heads) == len(a) and torch.equal(heads[3][0], a[3][0])


def test_avalanche_loads_without_jax_and_gem_keeps_its_solver():
    probe = ("import sys; from clbench.avalanche import import_avalanche; import_avalanche(); "
             "import qpsolvers; print('jax' in sys.modules, 'quadprog' in "
             "qpsolvers.available_solvers); import jax; print('jax' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["False", "True", "True"]  # hidden, solver kept, importable


def test_a_thousand_task_stream_builds_in_seconds():
    import avalanche.benchmarks.scenarios.dataset_scenario  # noqa: F401 - import is not the build

    from clbench.avalanche import avalanche_streams

    make_ctx(tasks=1)
    start = time.perf_counter()
    ctx = make_ctx(tasks=1000)
    bench = avalanche_streams(ctx)
    exp = bench.train_stream[999]
    elapsed = time.perf_counter() - start
    assert len(bench.train_stream) == 1000 and exp.task_label == 999
    assert exp.classes_in_this_experience == set(range(10))
    assert elapsed < 3, elapsed


def test_normalisation_is_per_channel():
    t = BatchTransform((0.5, 0.0), (0.5, 2.0))
    x = torch.full((1, 2, 2, 2), 255, dtype=torch.uint8)
    out = t(x)
    assert torch.allclose(out[0, 0], torch.ones(2, 2))
    assert torch.allclose(out[0, 1], 0.5 * torch.ones(2, 2))


def test_taxonomy_views():
    gg, gns, gnu, nns = (SCENARIOS[n] for n in ("gg", "gns", "gnu", "nns"))
    assert gg.label_view(False) == "task"
    assert gns.label_view(False) == "domain" and nns.label_view(False) == "domain"
    assert gnu.label_view(False) == "class-incremental"
    assert gnu.label_view(True) == "task"
    assert gg.label_view(False, "class-incremental") == "class-incremental"
    with pytest.raises(ClbenchError):
        gnu.label_view(False, "task")
    assert not nns.task_id_train and gnu.wrong_task_is_wrong and not gns.wrong_task_is_wrong


def test_on_disk_images_stream_through_workers(tmp_path):
    from PIL import Image

    for split in ("train", "val"):
        for c, wnid in enumerate(("n001", "n002")):
            folder = tmp_path / "imagenet" / split / wnid
            folder.mkdir(parents=True)
            for i in range(3):
                colour = (200 * c, 40 * i, 90)
                Image.new("RGB", (48, 40), colour).save(folder / f"{i}.JPEG", quality=95)
    source = load_source("imagenet", tmp_path)
    props = Split.properties(source.info, 1)
    defs, _ = Split.build(source, 1, 0)
    config = RunConfig(
        method="m", scenario="gg", benchmark="split", dataset="imagenet",
        data_identity=source.identity, model="resnet50", params={}, density=None,
        label_view="task", tasks=1, iters=None, epochs=1, batch_size=4, eval_batch_size=4,
        seed=0, data_seed=0, threads=1, device="cpu", eval_at=[1], val_fraction=0.0)
    ctx = RunContext(config, GG, props, source, defs, torch.device("cpu"))
    loader = ctx.train_loader(0)
    loader.workers = 2
    batches = list(loader)
    assert [len(y) for _, y, _ in batches] == [4, 2]
    x, y, _ = batches[0]
    assert x.shape == (4, 3, 224, 224) and set(torch.cat([b[1] for b in batches]).tolist()) == {
        0, 1}
    single, label, _ = ctx.task_data(0, "train")[0]
    assert single.shape == (3, 224, 224) and label in (0, 1)

"""Option resolution, params, presets and run ids."""

from __future__ import annotations

from dataclasses import replace

import pytest

from clbench.config import default_eval_at, parse_eval_at, resolve_options
from clbench.errors import ClbenchError, Incompatible
from clbench.method import Method, Preset
from clbench.params import Param
from clbench.plan import make_plan


class Toy(Method):
    name = "toy"
    scenarios = frozenset({"gg", "gnu"})
    params = (
        Param("lr", float, 0.1, "learning rate", low=0.0),
        Param("objective", str, ("H",), "objectives", choices=("H", "G"), multiple=True),
        Param("width", int, 3, "a size", low=1),
    )
    presets = (
        Preset({"scenario": "gnu"}, {"tasks": 250, "iters": 1000}, {"width": 7}),
        Preset({"scenario": "gnu", "preset": "paper"}, {"seed": 4}),
    )


def resolve(given=None, params=(), preset=None):
    base = {k: None for k in ("scenario", "tasks", "iters", "epochs", "density", "sparsity")}
    base.update(given or {})
    return resolve_options(Toy, base, list(params), preset)


def test_defaults_presets_and_user_options_in_order():
    options, params = resolve()
    assert options["tasks"] == 10 and params == {"lr": 0.1, "objective": ["H"], "width": 3}
    options, params = resolve({"scenario": "gnu"})
    assert options["tasks"] == 250 and params["width"] == 7 and options["seed"] == 1
    options, params = resolve({"scenario": "gnu", "tasks": 5}, ["width=9"], preset="paper")
    assert options["tasks"] == 5 and params["width"] == 9 and options["seed"] == 4
    assert options["data_seed"] == 1  # the default seed's: a preset's seed is the network's


def test_params_are_typed_and_validated():
    _, params = resolve(params=["objective=H,G", "lr=0.5"])
    assert params["objective"] == ["H", "G"] and params["lr"] == 0.5
    for bad in (["nope=1"], ["width=x"], ["width=0"], ["objective=Q"], ["width"]):
        with pytest.raises(ClbenchError):
            resolve(params=bad)
    _, params = resolve({"lr": 0.02})
    assert params["lr"] == 0.02
    with pytest.raises(ClbenchError, match="keep one"):
        resolve({"lr": 0.02}, ["lr=0.1"])


def test_density_and_sparsity():
    options, _ = resolve({"sparsity": 0.9})
    assert options["density"] == pytest.approx(0.1)
    for bad in ({"density": 0.0}, {"density": 1.5}, {"sparsity": 1.0},
                {"density": 0.5, "sparsity": 0.5}):
        with pytest.raises(ClbenchError):
            resolve(bad)


def test_numbers_and_lengths():
    with pytest.raises(ClbenchError, match="at least 1"):
        resolve({"tasks": 0})
    options, _ = resolve({"epochs": 2})
    assert options["iters"] is None and options["epochs"] == 2
    with pytest.raises(ClbenchError):
        resolve({"epochs": 2, "iters": 3})


def test_eval_schedule():
    assert default_eval_at(5) == [1, 2, 3, 4, 5]
    assert default_eval_at(250) == [10, 50, 100, 150, 200, 250]
    assert parse_eval_at("3,5", 8) == [3, 5, 8]
    with pytest.raises(ClbenchError):
        parse_eval_at("9", 8)


def plan(**given):
    base = {k: None for k in ("scenario", "benchmark", "dataset", "model", "tasks", "iters",
                              "epochs", "density", "sparsity", "label_view", "eval_at")}
    base.update(dataset="synthetic", tasks=2, iters=3)
    base.update(given)
    return make_plan("avalanche:naive", base, [])


def test_run_id_is_stable_and_changes_with_what_matters():
    a, b = plan(), plan()
    assert a.config.run_id == b.config.run_id
    assert plan(tasks=3).config.run_id != a.config.run_id
    changed = replace(a.config, data_identity={"checksum": "other"})
    assert changed.run_id != a.config.run_id
    tagged = replace(a.config, tags=["exp"])
    assert tagged.run_id == a.config.run_id  # tags mark records, they do not make new runs
    assert replace(a.config, seed=5).group_key == a.config.group_key


def test_compatibility_is_checked_before_work():
    with pytest.raises(Incompatible, match="has no density"):
        plan(density=0.5)
    with pytest.raises(Incompatible, match="does not support model"):
        plan(model="resnet50")
    with pytest.raises(ClbenchError, match="unknown scenario"):
        plan(scenario="xx")
    with pytest.raises(ClbenchError, match="unknown benchmark"):
        plan(benchmark="xx")
    with pytest.raises(ClbenchError, match="unknown dataset"):
        plan(dataset="xx")
    assert plan(scenario="gnu").config.label_view == "class-incremental"

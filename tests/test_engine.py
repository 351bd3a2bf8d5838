"""A whole run in-process: the record's contents and reproducibility."""

from __future__ import annotations

from inprocess import Small

SMALL = Small(dataset="mnist-5k", tasks=3, iters=40, seed=3)


def run(**given):
    return SMALL.run("avalanche:naive", **given)


def test_gg_record_holds_matrices_and_same_seed_gives_same_numbers():
    a, b = run(), run()
    assert a["checkpoints"] == b["checkpoints"] and a["diagonal"] == b["diagonal"]
    last = a["checkpoints"][-1]
    assert len(last["oracle"]) == 3 and last["accuracy"]["default"] == last["oracle"]
    assert last["oracle"][-1] == a["diagonal"][-1]
    assert last["bytes"]["fp32"]["bytes"] == 4 * (784 * 300 + 300 + 300 * 100 + 100 + 1010)
    assert a["diagonal"][0] > 0.5  # learnable synthetic data, far above chance (0.1) after 40 steps
    c = run(seed=4)
    assert c["checkpoints"] != a["checkpoints"]
    for key in ("versions", "git_commit"):
        assert key in a["environment"]
    assert a["config"]["data_identity"]["name"] == "mnist-5k"


def test_gnu_class_incremental_view_is_scored_per_sample():
    rec = run(scenario="gnu", benchmark="split", tasks=2, iters=30)
    assert rec["config"]["label_view"] == "class-incremental"
    assert rec["stream"]["outputs"] == 10
    inference = rec["checkpoints"][-1]["task_inference"]["default"]
    assert inference is not None and all(0 <= v <= 1 for v in inference)
    final = rec["final"]["default"]
    assert final["accuracy"] <= final["oracle_accuracy"] + 1e-9


def test_val_fraction_records_validation_accuracy_on_held_out_data():
    plain = run(tasks=2)
    assert "validation" not in plain
    held = run(tasks=2, val_fraction=0.2)
    validation = held["validation"]
    assert len(validation["oracle"]) == 2
    assert abs(validation["accuracy"] - sum(validation["oracle"]) / 2) < 1e-12
    assert validation["oracle"][0] > 0.5  # learned, and scored on images it never trained on
    assert validation["oracle"] != held["checkpoints"][-1]["oracle"]  # not the test set
    assert held["checkpoints"] != plain["checkpoints"]  # 20% fewer training images

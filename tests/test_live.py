"""Live logging (``--log``): what TensorBoard, the CSV logger and W&B hold equals the record's
numbers, for a native method and an Avalanche strategy; the loss curve and per-task means;
``--log`` leaves the run id alone."""

from __future__ import annotations

import csv
import json
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from clbench.live import Live
from clbench.metrics import average
from clbench.runner import RunSpec

NEUTRAL = tempfile.gettempdir()
SMALL = ["--dataset", "mnist-5k", "--tasks", "3", "--iters", "40", "--threads", "1",
         "--no-progress", "--log-every", "10"]


def clbench(*args):
    out = subprocess.run([sys.executable, "-m", "clbench", *args], capture_output=True,
                         text=True, timeout=600, cwd=NEUTRAL)
    assert out.returncode == 0, out.stderr
    return out


def tensorboard_scalars(folder: Path) -> dict[str, dict[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: {e.step: e.value for e in events.Scalars(tag)}
            for tag in events.Tags()["scalars"]}


def expected(record: dict) -> dict[str, dict[int, float]]:
    """The record's evaluation numbers under the loggers' names, by tasks learned."""
    variants = record["variants"]
    out: dict[str, dict[int, float]] = {"eval/oracle_accuracy": {}}
    for point in record["checkpoints"]:
        k = point["after_tasks"]
        out["eval/oracle_accuracy"][k] = average(point["oracle"])
        for v in variants:
            suffix = "" if variants == ["default"] else f"/{v}"
            out.setdefault(f"eval/accuracy{suffix}", {})[k] = average(point["accuracy"][v])
            if point["task_inference"][v] is not None:
                out.setdefault(f"eval/task_inference{suffix}", {})[k] = average(
                    point["task_inference"][v])
    out["task/accuracy"] = {t + 1: a for t, a in enumerate(record["diagonal"])}
    return out


def check_run(results: Path) -> tuple[dict, Path]:
    (path,) = results.glob("*/record.json")
    record = json.loads(path.read_text())
    assert record["status"] == "complete"
    folder = path.parent
    with (folder / "train_loss.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["step"]) for r in rows] == list(range(1, 3 * 40 + 1))
    for task in (1, 2, 3):
        losses = [float(r["loss"]) for r in rows if int(r["task"]) == task]
        assert len(losses) == 40
        assert record["train_loss"][task - 1] == pytest.approx(sum(losses) / 40, rel=1e-12)
    return record, folder


def test_tensorboard_and_csv_hold_the_records_numbers(results):
    clbench("run", "--method", "supsup", "--scenario", "gnu", "--param", "output_size=20",
            *SMALL, "--log", "tensorboard", "--log", "csv")
    record, folder = check_run(results)
    scalars = tensorboard_scalars(folder / "logs" / "tensorboard")
    for tag, by_step in expected(record).items():
        assert scalars[tag] == pytest.approx(by_step, rel=1e-6), tag  # float32 in the events
    assert "eval/accuracy/H" in scalars and len(scalars["eval/accuracy/H"]) == 3
    assert sorted(scalars["train/loss"]) == list(range(10, 121, 10))
    with (folder / "logs" / "csv" / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    logged: dict[str, dict[int, float]] = {}
    for row in rows:
        logged.setdefault(row["metric"], {})[int(row["step"])] = float(row["value"])
    for tag, by_step in expected(record).items():
        assert logged[tag] == by_step, tag  # exact: the CSV keeps every digit
    hparams = json.loads((folder / "logs" / "csv" / "hparams.json").read_text())
    assert hparams["method"] == "supsup" and hparams["params.output_size"] == 20


def test_an_avalanche_strategy_is_logged_with_clbenchs_numbers(results):
    clbench("run", "--method", "avalanche:naive", "--scenario", "gg", *SMALL, "--log",
            "tensorboard")
    record, folder = check_run(results)
    scalars = tensorboard_scalars(folder / "logs" / "tensorboard")
    for tag, by_step in expected(record).items():
        assert scalars[tag] == pytest.approx(by_step, rel=1e-6), tag
    assert record["train_loss"][0] > record["train_loss"][2] > 0  # it learns


def wandb_history(run_file: Path) -> list[dict]:
    """The history rows of a W&B ``.wandb`` file (a LevelDB-style log of protobuf records:
    a 7-byte header, 32 KiB blocks, each chunk with a 7-byte header of checksum, length and
    kind: 1 full, 2 first, 3 middle, 4 last)."""
    from wandb.proto import wandb_internal_pb2

    data = run_file.read_bytes()
    assert data[:4] == b":W&B"
    rows, position, block, pending = [], 7, 32768, b""
    while position + 7 <= len(data):
        left = block - position % block
        if left < 7:
            position += left
            continue
        _, length, kind = struct.unpack("<IHB", data[position:position + 7])
        if length == 0 and kind == 0:
            position += left
            continue
        pending += data[position + 7:position + 7 + length]
        position += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            if record.WhichOneof("record_type") == "history":
                rows.append({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                             for item in record.history.item})
    return rows


def test_wandb_leaves_an_offline_run_with_the_same_history(results, tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    try:
        probe = wandb.init(mode="offline", dir=str(tmp_path), project="probe",
                           settings=wandb.Settings(console="off", quiet=True,
                                                   x_disable_stats=True))
        probe.finish()
    except Exception as exc:  # noqa: BLE001 - the local service is not available here
        pytest.skip(f"W&B's local service cannot start here: {type(exc).__name__}: {exc}")
    clbench("run", "--method", "avalanche:naive", "--scenario", "gg", *SMALL, "--log", "wandb")
    record, folder = check_run(results)
    (run_file,) = (folder / "logs" / "wandb").glob("wandb/offline-run-*/run-*.wandb")
    logged: dict[str, dict[int, float]] = {}
    steps = {"train": "train/step", "task": "task/number", "eval": "eval/tasks_learned"}
    for row in wandb_history(run_file):
        for key, value in row.items():
            series = key.split("/")[0]
            if series in steps and key != steps[series]:
                logged.setdefault(key, {})[row[steps[series]]] = value
    for tag, by_step in expected(record).items():
        assert logged[tag] == pytest.approx(by_step, rel=1e-12), tag
    assert sorted(logged["train/loss"]) == list(range(10, 121, 10))


def test_log_is_not_part_of_the_run_id():
    given = {"dataset": "mnist-5k", "tasks": 2, "iters": 5}
    plain = RunSpec("psp", dict(given)).plan().config
    logged = RunSpec("psp", dict(given), log=["csv", "tensorboard"], log_every=7).plan().config
    assert logged.run_id == plain.run_id and logged.to_dict() == plain.to_dict()


def test_a_resumed_run_keeps_the_curve_of_its_finished_tasks(tmp_path):
    curve = tmp_path / "train_loss.csv"
    curve.write_text("task,step,loss\n1,1,2.0\n1,2,1.0\n2,3,0.5\n2,4,0.5\n3,5,9.0\n")
    live = Live([], tmp_path / "logs", curve, "run")
    live.begin({}, learned=2, per_task=2)
    assert live.record_losses() == [1.5, 0.5]  # task 3 was interrupted: its rows are dropped
    assert curve.read_text() == "task,step,loss\n1,1,2.0\n1,2,1.0\n2,3,0.5\n2,4,0.5\n"
    assert live.step == 4
    live.close()


def test_without_a_logger_nothing_is_observed_and_a_logged_run_lets_go(tmp_path):
    from clbench.engine import execute
    from clbench.plan import make_plan, with_data
    from clbench.training import loss_observer

    plan, source = with_data(make_plan("psp", {"dataset": "mnist-5k", "tasks": 1, "iters": 3,
                                              "threads": 1}, []), None, False)
    record = execute(plan, source, ["test"], show_progress=False)
    assert "train_loss" not in record and loss_observer() is None
    live = Live(["csv"], tmp_path / "logs", tmp_path / "train_loss.csv", "run")
    try:
        record = execute(plan, source, ["test"], show_progress=False, live=live)
    finally:
        live.close()
    assert len(record["train_loss"]) == 1 and loss_observer() is None


def test_sweeps_take_log_from_the_command_line_or_their_file(tmp_path):
    from clbench.store import Store
    from clbench.sweep import SweepSpec, merge_file, plan_sweep

    base = SweepSpec(["psp"], {"dataset": "mnist-5k", "tasks": 2, "iters": 5}, [],
                     {"seed": [0, 1]})
    from_file = merge_file(base, {"log": ["csv", "tensorboard"], "log_every": 10})
    assert from_file.log == ["csv", "tensorboard"] and from_file.log_every == 10
    given = merge_file(SweepSpec(**{**base.__dict__, "log": ["wandb"]}), {"log": "csv"})
    assert given.log == ["wandb"]  # the command line wins
    plan = plan_sweep(from_file, Store(tmp_path / "results"))
    assert [p.spec.log for p in plan] == [["csv", "tensorboard"]] * 2
    plain = plan_sweep(base, Store(tmp_path / "results"))
    assert [p.run_id for p in plan] == [p.run_id for p in plain]

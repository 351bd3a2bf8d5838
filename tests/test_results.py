"""clbench.results: the tidy frames, their statistics against hand-computed numbers, filters,
skipped records, and export's formats."""

from __future__ import annotations

import io
import json
import math
import subprocess
from pathlib import Path

import pytest

from clbench import metrics
from clbench.config import RunConfig
from clbench.errors import ClbenchError
from clbench.results import SkippedRecord, aggregate, export, load, runs, summarize, t95
from clbench.store import Store


def record(method: str, seed: int, rows: list[list[float]], *, variants=("default",),
           scenario: str = "gg", inference: list[float] | None = None, **params) -> dict:
    """A complete record: ``rows`` are the accuracies at checkpoints after 1, 2, ... tasks."""
    tasks = len(rows)
    # seconds of the work after each task; records written before the field lack it (psp here)
    after = {"eval_s_per_task": [0.5 * (t + 1) for t in range(tasks)]} if inference else {}
    cfg = {"method": method, "scenario": scenario, "benchmark": "permuted",
           "dataset": "synthetic", "data_identity": {"name": "synthetic", "train": 1,
                                                     "test": 1, "checksum": "x", "note": ""},
           "model": "lenet", "params": {"lr": 0.1, **params}, "density": None,
           "label_view": "task", "tasks": tasks, "iters": 5, "epochs": None, "batch_size": 8,
           "eval_batch_size": 8, "seed": seed, "data_seed": seed, "threads": 1,
           "device": "cpu", "eval_at": list(range(1, tasks + 1)), "val_fraction": 0.0,
           "plugin": None, "tags": [f"t-{method}"]}
    diagonal = [rows[t][t] for t in range(tasks)]
    points = [{"after_tasks": t + 1, "oracle": row, "accuracy": {v: row for v in variants},
               "task_inference": {v: (inference[:t + 1] if inference else None)
                                  for v in variants},
               "bytes": {"bits": {"bytes": 100 * (t + 1), "formula": "f"}}}
              for t, row in enumerate(rows)]
    final = {"accuracy": metrics.average(rows[-1]), "oracle_accuracy": metrics.average(rows[-1]),
             "task_inference": metrics.average(inference) if inference else None,
             "forgetting": metrics.forgetting(rows, diagonal),
             "backward_transfer": metrics.backward_transfer(rows, diagonal)}
    return {"schema_version": 1, "run_id": RunConfig.from_dict(cfg).run_id,
            "status": "complete", "error": None, "config": cfg, "variants": list(variants),
            "diagonal": diagonal, "checkpoints": points, "final": {v: final for v in variants},
            "extras": {}, "timing": {"setup_s": 1.0, "train_s": 4.0 + seed, "eval_s": 1.0,
                                     "total_s": 6.0 + seed, "train_s_per_task": [2.0] * tasks,
                                     **after},
            "peak_memory_mb": 100.0}


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """psp over seeds 0-2 (2 tasks), supsup H,G over one seed (3 tasks), a broken file."""
    root = tmp_path_factory.mktemp("results")
    store = Store(root)
    for seed, last in ((0, [0.6, 0.9]), (1, [0.7, 0.8]), (2, [0.5, 1.0])):
        store.write(record("psp", seed, [[0.9], last]))
    store.write(record("supsup", 1, [[1.0], [1.0, 0.9], [1.0, 0.9, 0.8]], variants=("H", "G"),
                       scenario="gnu", inference=[1.0, 1.0, 0.5], objective=["H", "G"]))
    (root / "broken").mkdir()
    (root / "broken" / "record.json").write_text("{")
    return root


def test_load_is_one_row_per_run_variant_evaluation_point_and_task(root):
    with pytest.warns(SkippedRecord, match="broken/record.json"):
        tasks = load(root)
    assert len(tasks) == 3 * (1 + 2) + 2 * (1 + 2 + 3)
    row = tasks[(tasks.method == "psp") & (tasks.seed == 2) & (tasks.after_tasks == 2)
                & (tasks.task == 1)].iloc[0]
    assert row.accuracy == pytest.approx(50.0) and row.oracle == pytest.approx(50.0)
    assert row.just_learned == pytest.approx(90.0) and row.bytes_bits == 200
    assert row["param.lr"] == 0.1 and row.eval_at == "1,2" and row.tags == "t-psp"
    g = tasks[(tasks.variant == "G") & (tasks.after_tasks == 3)]
    assert g.task_inference.tolist() == pytest.approx([100.0, 100.0, 50.0])
    assert set(tasks["param.objective"].dropna()) == {"H,G"}
    assert tasks[tasks.method == "psp"].task_inference.isna().all()
    assert g.train_s_task.tolist() == [2.0] * 3 and g.eval_s_task.tolist() == [0.5, 1.0, 1.5]
    assert tasks[tasks.method == "psp"].eval_s_task.isna().all()  # an older record


def test_runs_hold_the_final_metrics_in_percent(root):
    with pytest.warns(SkippedRecord):
        frame = runs(root)
    assert len(frame) == 3 + 2
    psp = frame[frame.method == "psp"].sort_values("seed")
    assert psp.accuracy.tolist() == pytest.approx([75.0, 75.0, 75.0])
    # task 1: 0.9 right after learning, then 0.6, 0.7, 0.5
    assert psp.forgetting.tolist() == pytest.approx([30.0, 20.0, 40.0])
    assert psp.total_s.tolist() == [6.0, 7.0, 8.0] and psp.bytes_bits.tolist() == [200] * 3
    assert frame.groupby("group").ngroups == 2


def test_aggregate_gives_mean_std_sem_interval_and_n_over_seeds(root):
    with pytest.warns(SkippedRecord):
        stats = aggregate(runs(root))
    assert len(stats) == 3  # psp, supsup H, supsup G
    psp = stats[stats.method == "psp"].iloc[0]
    assert psp.n == 3 and psp.seeds == "0,1,2"
    assert psp.forgetting_mean == pytest.approx(30.0)
    assert psp.forgetting_std == pytest.approx(10.0)  # 30 ± 10 over 20, 30, 40
    assert psp.forgetting_sem == pytest.approx(10.0 / math.sqrt(3))
    assert psp.forgetting_ci95_low == pytest.approx(30.0 - 4.3027 * 10.0 / math.sqrt(3))
    assert psp.forgetting_ci95_high == pytest.approx(30.0 + 4.3027 * 10.0 / math.sqrt(3))
    assert psp.task_inference_n == 0 and math.isnan(psp.task_inference_mean)
    h = stats[stats.variant == "H"].iloc[0]
    assert h.n == 1 and h.accuracy_mean == pytest.approx(90.0) and math.isnan(h.accuracy_std)
    assert h["param.objective"] == "H,G" and h.scenario == "gnu"
    with pytest.warns(SkippedRecord):
        psp_runs = runs(root, method="psp")
    by_method = aggregate(psp_runs, by=["method"], metrics=["accuracy"])
    assert list(by_method.columns) == ["method", "n", "seeds", *(
        f"accuracy_{s}" for s in ("mean", "std", "sem", "ci95_low", "ci95_high", "n"))]


def test_filters_select_config_values_params_and_tags(root):
    with pytest.warns(SkippedRecord):
        assert len(runs(root, method="supsup")) == 2
        assert len(runs(root, method=["psp", "supsup"], seed=1)) == 1 + 2
        assert len(runs(root, tag="t-psp")) == 3
        assert len(runs(root, objective="H,G", variant="G")) == 1
        assert len(runs(root, tasks=3)) == 2 and len(runs(root, density=None)) == 5
        with pytest.raises(ClbenchError, match="cannot filter on 'colour'"):
            runs(root, colour="red")


def test_statistics_match_the_textbook():
    assert summarize([]).n == 0 and summarize([None, float("nan"), 2.0]).std is None
    s = summarize([0.2, 0.4], scale=100)
    assert s.mean == pytest.approx(30.0) and s.std == pytest.approx(math.sqrt(200))
    assert s.ci95_high - s.mean == pytest.approx(12.7062 * 10.0)
    scipy = pytest.importorskip("scipy.stats", reason="scipy checks the t quantiles")
    for df in (1, 2, 5, 30, 31, 45, 100, 1000):
        assert t95(df) == pytest.approx(scipy.t.ppf(0.975, df), rel=2e-4), df


def test_export_writes_csv_and_json_lines_that_read_back_equal(root):
    import pandas as pd

    with pytest.warns(SkippedRecord):
        frame = runs(root)
        text = export("runs", "csv", root)
        lines = export("runs", "jsonl", root).splitlines()
        agg = export("aggregate", "csv", root, method="psp")
    back = pd.read_csv(io.StringIO(text))
    assert back.accuracy.tolist() == frame.accuracy.tolist()
    assert back.total_s.tolist() == frame.total_s.tolist()
    assert len(lines) == 5 and '"task_inference": null' in lines[0]
    assert pd.read_csv(io.StringIO(agg)).accuracy_mean.tolist() == pytest.approx([75.0])
    with pytest.raises(ClbenchError, match="--what matrix: choose one of tasks, runs"):
        export("matrix", "csv", root)
    with pytest.raises(ClbenchError, match="--format xlsx"):
        export("runs", "xlsx", root)


REPO = Path(__file__).resolve().parent.parent


def readme_code() -> str:
    """The Python block of the README's "Your own analysis" section."""
    section = (REPO / "README.md").read_text(encoding="utf-8").split(
        "\n## Your own analysis\n")[1].split("\n## ")[0]
    return section.split("```python\n")[1].split("```")[0]


@pytest.mark.skipif(not (REPO / "README.md").is_file(), reason="not a source checkout")
def test_the_readmes_analysis_runs_on_the_committed_records(tmp_path, monkeypatch, capsys):
    listed = subprocess.run(["git", "-C", str(REPO), "ls-files", "results"], text=True,
                            capture_output=True)
    if listed.returncode != 0:
        pytest.skip("not a git checkout")
    expected: dict[tuple[str, str], list[float]] = {}
    for name in listed.stdout.split():
        if name.endswith("record.json"):
            (tmp_path / name).parent.mkdir(parents=True)
            (tmp_path / name).write_bytes((REPO / name).read_bytes())
            data = json.loads((REPO / name).read_text())
            if "permuted-lenet-50" in data["config"]["tags"]:
                for variant, final in data["final"].items():
                    expected.setdefault((data["config"]["method"], variant), []).append(
                        final["accuracy"] * 100)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    scope: dict = {}
    exec(compile(readme_code(), "README.md", "exec"), scope)  # noqa: S102 - the README's code
    runs_, board = scope["runs"], scope["board"]
    assert len(runs_) == sum(len(v) for v in expected.values()) == 15
    assert len(board) == len(expected) == 5  # one row per method and variant
    for row in board.itertuples():
        values = expected[row.method, row.variant]
        assert row.n == len(values) == 3
        assert row.accuracy_mean == pytest.approx(sum(values) / 3, abs=1e-9)
    printed = capsys.readouterr().out
    assert "upper-bound" in printed and "93.89" in printed
    from matplotlib.image import imread

    image = imread(tmp_path / "permuted-lenet-50.png")
    assert image.shape[0] > 200 and image[..., :3].std() > 0.05

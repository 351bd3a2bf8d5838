"""clbench report: tables against hand-computed numbers, skipped records, filters, grouping,
plot images, published values and byte-identical regeneration, all from fixture records."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from clbench import metrics
from clbench.config import RunConfig
from clbench.errors import ClbenchError
from clbench.report import Filters, write_report
from clbench.report import published as published_values
from clbench.report.runs import collect
from clbench.store import Store


def make_record(method: str = "supsup", scenario: str = "gnu", seed: int = 0, *,
                rows: list[list[float]], variants: tuple[str, ...] = ("H",),
                inference: list[list[float]] | None = None, bytes_: int = 1000,
                threads: int = 1, tags: tuple[str, ...] = (), tasks_at: list[int] | None = None,
                masks: list[int] | None = None, total_s: float = 10.0,
                **config: object) -> dict:
    """A complete schema-v1 record whose scenario and oracle accuracies are ``rows`` (one row
    per checkpoint, one value per task learned) for every variant."""
    tasks_at = tasks_at or list(range(1, len(rows) + 1))
    data_identity = {"name": "synthetic", "train": 10, "test": 10, "checksum": "x", "note": ""}
    cfg = {"method": method, "scenario": scenario, "benchmark": "permuted",
           "dataset": "synthetic", "data_identity": data_identity, "model": "lenet",
           "params": {"lr": 0.1}, "density": None, "label_view": "task", "tasks": tasks_at[-1],
           "iters": 5, "epochs": None, "batch_size": 8, "eval_batch_size": 8, "seed": seed,
           "data_seed": seed, "threads": threads, "device": "cpu", "eval_at": tasks_at,
           "val_fraction": 0.0, "plugin": None, "tags": list(tags)}
    cfg.update(config)
    diagonal = [rows[-1][0]] * tasks_at[-1]
    for t, row in zip(tasks_at, rows):
        diagonal[t - 1] = row[t - 1]
    checkpoints = [{"after_tasks": t, "oracle": row,
                    "accuracy": {v: row for v in variants},
                    "task_inference": {v: inference[i] if inference else None for v in variants},
                    "bytes": {"bits": {"bytes": bytes_ * t, "formula": "test-bits"}}}
                   for i, (t, row) in enumerate(zip(tasks_at, rows))]
    final = {v: {"accuracy": metrics.average(rows[-1]), "oracle_accuracy": metrics.average(
        rows[-1]), "task_inference": metrics.average(inference[-1]) if inference else None,
        "forgetting": metrics.forgetting(rows, diagonal),
        "backward_transfer": metrics.backward_transfer(rows, diagonal)} for v in variants}
    return {"schema_version": 1, "run_id": RunConfig.from_dict(cfg).run_id, "status": "complete",
            "error": None, "config": cfg, "variants": list(variants), "diagonal": diagonal,
            "checkpoints": checkpoints, "final": final,
            "extras": {"masks_allocated": masks} if masks else {},
            "timing": {"setup_s": 1.0, "train_s": total_s - 2, "eval_s": 1.0,
                       "total_s": total_s, "train_s_per_task": [1.0] * tasks_at[-1]},
            "peak_memory_mb": 500.0 + seed}


def save(root: Path, record: dict) -> Path:
    return Store(root).write(record)


def fixture_records(root: Path) -> None:
    """supsup GNu H,G over three seeds, naive GG over two, supsup NNs over one, and a
    corrupt, a half-written, a non-record and a failed record."""
    for seed, last in ((0, [0.8, 0.8]), (1, [0.9, 0.9]), (2, [0.85, 0.85])):
        save(root, make_record("supsup", "gnu", seed, rows=[[0.9], last], variants=("H", "G"),
                               inference=[[1.0], [1.0, 0.5 + 0.25 * seed]], bytes_=1000 + seed,
                               tags=("exp-a",), total_s=10.0 + seed))
    for seed, rows in ((0, [[0.9], [0.6, 0.8]]), (1, [[0.7], [0.4, 0.9]])):
        save(root, make_record("naive", "gg", seed, rows=rows, variants=("default",),
                               bytes_=4_000_000, tags=("exp-b",)))
    save(root, make_record("supsup", "nns", 1, rows=[[0.5], [0.5, 0.6], [0.5, 0.6, 0.7]],
                           masks=[1, 2, 4]))
    good = save(root, make_record("naive", "gg", 5, rows=[[0.5]], variants=("default",)))
    (root / "corrupt").mkdir()
    (root / "corrupt" / "record.json").write_bytes(b"\x00\xff not json")
    (root / "half").mkdir()
    (root / "half" / "record.json").write_text(good.read_text()[:200])
    good.unlink()
    (root / "other").mkdir()
    (root / "other" / "record.json").write_text('{"hello": 1}')
    failed = make_record("supsup", "gnu", 9, rows=[[0.1]], variants=("H", "G"))
    failed.update(status="failed", error="RuntimeError: out of memory\ntraceback line")
    save(root, failed)


def csv_rows(path: Path, key: str = "", many: bool = False) -> dict[str, Any]:
    """A CSV's rows by ``key`` (default: its group or run column), or lists of them."""
    import csv

    with path.open() as handle:
        rows = list(csv.DictReader(handle))
    key = key or next((k for k in ("group", "run") if k in rows[0]), next(iter(rows[0])))
    if many:
        out: dict[str, list[dict[str, str]]] = {}
        for row in rows:
            out.setdefault(row[key], []).append(row)
        return out
    return {row[key]: row for row in rows}


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    fixture_records(root)
    out = tmp_path_factory.mktemp("report")
    summary = write_report(root, out)
    return root, out, summary


GNU_H = "supsup H · gnu · permuted · synthetic · lenet"
GNU_G = "supsup G · gnu · permuted · synthetic · lenet"
GG = "naive · gg · permuted · synthetic · lenet"
NNS = "supsup H · nns · permuted · synthetic · lenet"


def test_tables_hold_hand_computed_means_and_stds(report):
    _, out, _ = report
    acc = csv_rows(out / "tables" / "accuracy-bytes.csv")
    assert list(acc) == [GG, GNU_H, GNU_G, NNS]
    # supsup GNu: final accuracies 80, 90, 85 -> mean 85, sample std 5
    assert float(acc[GNU_H]["accuracy_pct_mean"]) == pytest.approx(85.0)
    assert float(acc[GNU_H]["accuracy_pct_std"]) == pytest.approx(5.0)
    assert acc[GNU_H]["n"] == "3" and acc[GNU_H]["seeds"] == "0, 1, 2"
    # bytes after 2 tasks: 2000, 2002, 2004 -> 2002 ± 2
    assert float(acc[GNU_H]["bytes_bits_mean"]) == pytest.approx(2002.0)
    assert float(acc[GNU_H]["bytes_bits_std"]) == pytest.approx(2.0)
    # naive GG: (60+80)/2 = 70 and (40+90)/2 = 65 -> 67.5 ± 3.5355
    assert float(acc[GG]["accuracy_pct_mean"]) == pytest.approx(67.5)
    assert float(acc[GG]["accuracy_pct_std"]) == pytest.approx(2.5 * 2 ** 0.5)
    assert acc[NNS]["accuracy_pct_std"] == ""  # one seed: no std
    by_tasks = csv_rows(out / "tables" / "accuracy-by-tasks.csv")
    assert float(by_tasks[GNU_H]["after_2_mean"]) == pytest.approx(85.0)
    assert float(by_tasks[GG]["after_2_mean"]) == pytest.approx(67.5)
    assert float(by_tasks[NNS]["after_3_mean"]) == pytest.approx(60.0)
    assert by_tasks[GG]["after_3_mean"] == ""
    inference = csv_rows(out / "tables" / "task-inference.csv")
    # final task inference per seed: mean(1, .5), mean(1, .75), mean(1, 1) -> 87.5 ± 12.5
    assert float(inference[GNU_G]["task_inference_pct_mean"]) == pytest.approx(87.5)
    assert float(inference[GNU_G]["task_inference_pct_std"]) == pytest.approx(12.5)
    assert inference[GG]["task_inference_pct_mean"] == ""
    forgetting = csv_rows(out / "tables" / "forgetting.csv")
    # naive GG: task 0 dropped 90 -> 60 and 70 -> 40: forgetting 30 ± 0, BWT -30
    assert float(forgetting[GG]["forgetting_pp_mean"]) == pytest.approx(30.0)
    assert float(forgetting[GG]["backward_transfer_pp_mean"]) == pytest.approx(-30.0)
    cost = csv_rows(out / "tables" / "cost.csv")
    run = "supsup · gnu · permuted · synthetic · lenet"
    assert float(cost[run]["total_s_mean"]) == pytest.approx(11.0)
    assert float(cost[run]["peak_memory_mb_mean"]) == pytest.approx(501.0)
    readme = (out / "README.md").read_text()
    board = readme.split("## 1. Permuted synthetic")[1].split("![")[0]
    assert board.splitlines()[4:7] == [  # best first, the scenario a column
        "| SupSup (H) | GNu | 85.00 ± 5.00 | 3 | 87.50 ± 12.50 | 2.00 kB (bits) | 9 s "
        "| 5.00 ± 5.00 |",
        "| SupSup (G) | GNu | 85.00 ± 5.00 | 3 | 87.50 ± 12.50 | 2.00 kB (bits) | 9 s "
        "| 5.00 ± 5.00 |",
        "| naive | GG | 67.50 ± 3.54 | 2 | — | 8.00 MB (bits) | 8 s | 30.00 ± 0.00 |"]
    assert "**" not in board  # SupSup H does not lead G by more than its std


def test_corrupt_half_written_and_failed_records_are_listed_and_skipped(report):
    root, out, summary = report
    skipped = csv_rows(out / "tables" / "skipped.csv")
    assert set(skipped) == {"corrupt/record.json", "half/record.json", "other/record.json",
                            "supsup-gnu-permuted-synthetic-s9-"
                            + make_record(seed=9, rows=[[0.1]], variants=("H", "G"))["run_id"]
                            + "/record.json"}
    assert "unreadable" in skipped["half/record.json"]["reason"]
    assert "not a clbench record" in skipped["other/record.json"]["reason"]
    failed = next(v for k, v in skipped.items() if "-s9-" in k)
    assert failed["reason"] == "failed: RuntimeError: out of memory"
    assert summary.count("\nskipped ") == 4 and str(root / "corrupt" / "record.json") in summary
    assert "## Skipped records" in (out / "README.md").read_text()


def test_a_complete_record_with_missing_parts_is_skipped(tmp_path):
    record = make_record(rows=[[0.5]])
    del record["checkpoints"][0]["accuracy"]
    save(tmp_path, record)
    save(tmp_path, make_record(rows=[[0.5]], seed=1))
    collection = collect(tmp_path)
    assert [len(g.runs) for g in collection.groups] == [1]
    assert "malformed record (KeyError" in collection.skipped[0].reason


def test_filters_keep_matching_records(tmp_path):
    fixture_records(tmp_path)
    names = lambda f: [g.name for g in collect(tmp_path, f).groups]  # noqa: E731
    assert names(Filters(method=("naive",))) == [GG]
    assert names(Filters(scenario=("gnu", "nns"))) == [GNU_H, GNU_G, NNS]
    assert names(Filters(tag=("exp-b",))) == [GG]
    assert names(Filters(benchmark=("rotated",))) == []
    assert names(Filters(dataset=("synthetic",), method=("supsup",))) == [GNU_H, GNU_G, NNS]
    with pytest.raises(ClbenchError, match="match --method nope: methods: naive, supsup"):
        write_report(tmp_path, tmp_path / "out", Filters(method=("nope",)))
    with pytest.raises(ClbenchError, match="no records under"):
        write_report(tmp_path / "empty", tmp_path / "out")


def test_groups_are_configs_without_their_seeds(tmp_path):
    rows = [[0.5]]
    save(tmp_path, make_record(seed=0, rows=rows))
    save(tmp_path, make_record(seed=1, rows=rows))
    save(tmp_path, make_record(seed=2, rows=rows, data_seed=7))
    save(tmp_path, make_record(seed=0, rows=rows, threads=2))
    save(tmp_path, make_record(seed=0, rows=rows, params={"lr": 0.5}, tags=("x",)))
    groups = collect(tmp_path).groups
    by_name = {g.name: g for g in groups}
    assert len(groups) == 3
    base = "supsup H · gnu · permuted · synthetic · lenet"
    assert by_name[f"{base} · lr=0.1 · threads=1"].seeds == "0, 1, 2 (data 7)"
    assert by_name[f"{base} · lr=0.1 · threads=2"].seeds == "0"
    assert by_name[f"{base} · lr=0.5 · threads=1"].tags == "x"
    assert len({g.key for g in groups}) == 3


def test_plots_are_settings_and_heatmaps_of_forgetting_groups(report):
    from matplotlib.image import imread

    from clbench.report.draw import HEATMAP, MAX_HEIGHT

    _, out, _ = report
    pngs = sorted(p.name for p in (out / "plots").glob("*.png"))
    assert pngs == ["heatmap-01-naive-gg.png", "heatmap-02-supsup-gnu-h.png",
                    "heatmap-03-supsup-gnu-g.png",
                    "setting-01-permuted-synthetic-lenet-2-tasks-5-iterations-per-task.png",
                    "setting-02-permuted-synthetic-lenet-3-tasks-5-iterations-per-task.png"]
    readme = (out / "README.md").read_text()
    for name in pngs:
        image = imread(out / "plots" / name)
        assert image.shape[0] <= MAX_HEIGHT and image[..., :3].std() > 0.05, name
        if name.startswith("heatmap"):
            assert image.shape[:2] == (round(HEATMAP[1] * 100), round(HEATMAP[0] * 100))
        svg = (out / "plots" / name).with_suffix(".svg").read_text()
        assert svg.startswith("<?xml") and "<dc:date>" not in svg
        assert f"(plots/{name})" in readme
    # NNs never forgets here (0 points): listed, not drawn
    assert "No measured forgetting (below 0.5 points): 1 group</summary>" in readme
    assert "- Permuted synthetic · LeNet · 3 tasks · 5 iterations per task: SupSup (NNs, H)" in (
        readme)
    curve = csv_rows(out / "plots" / "setting-01-permuted-synthetic-lenet-2-tasks-5-"
                     "iterations-per-task.csv", key="series", many=True)
    # naive after 1 task: 90 and 70 -> 80 ± 14.14; after 2: 70 and 65 -> 67.5 ± 3.54
    naive = [(r["x"], float(r["mean"]), float(r["std"])) for r in curve["naive (GG)"]]
    assert naive == [("1", 80.0, pytest.approx(200 ** 0.5)), ("2", 67.5, pytest.approx(
        2.5 * 2 ** 0.5))]
    assert [float(r["mean"]) for r in curve["SupSup (GNu, H)"]] == [90.0, 85.0]


def test_published_values_have_sources_and_show_beside_matching_groups(tmp_path):
    values = published_values.load()
    assert {"splitimagenet-supsup-s16", "permutedmnist-gnu-250-supsup",
            "permutedmnist-gg-20-official"} <= {v.id for v in values}
    official = next(v for v in values if v.id == "permutedmnist-gg-20-official")
    assert official.accuracy == 93.65 and official.range == (93.40, 94.05)
    assert all(v.kind in ("table", "figure", "text") and v.where and isinstance(v.exact, bool)
               for v in values)
    s16 = next(v for v in values if v.id == "splitimagenet-supsup-s16")
    assert s16.bytes == 195.18e6 and s16.accuracy == 89.58
    save(tmp_path, make_record("supsup", "gnu", 1, rows=[[0.95] * 250], tasks_at=[250],
                               dataset="mnist", model="fc1024"))
    save(tmp_path, make_record("supsup", "gnu", 1, rows=[[0.93] * 250], tasks_at=[250],
                               dataset="mnist"))
    out = tmp_path / "out"
    write_report(tmp_path, out)
    accuracy = csv_rows(out / "tables" / "accuracy-bytes.csv")
    fc, lenet = sorted(accuracy.values(), key=lambda r: "fc1024" not in r["group"])
    assert "fc1024" in fc["group"] and "lenet" in lenet["group"]
    assert fc["published"] == "94.91 % [permutedmnist-gnu-250-supsup]"
    assert lenet["published"] == ""  # the paper's network is likely FC-1024
    published = (out / "tables" / "published.csv").read_text()
    assert "permutedmnist-gnu-250-supsup" in published and "95.0" in published


def test_the_cli_regenerates_the_report_byte_identically_importing_no_method(report):
    root, first, _ = report
    second = first.parent / "again"
    probe = ("import sys; from clbench.cli import app; app(['report', '--results', "
             f"{str(root)!r}, '--out', {str(second)!r}], standalone_mode=False); "
             "print('torch' in sys.modules, 'clbench.registry' in sys.modules)")
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         timeout=120, cwd=first.parent)
    assert run.returncode == 0, run.stderr
    assert "9 runs in 4 groups, 4 records skipped" in run.stdout
    assert run.stdout.split()[-2:] == ["False", "False"]
    ours = sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    # tables and leaderboards; two setting figures (PNG, SVG, CSV) and three heatmaps (PNG,
    # SVG); README and manifest
    assert len(ours) == 9 + 2 * 3 + 3 * 2 + 2
    for name in ours:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_a_report_owns_only_the_files_it_writes(tmp_path):
    results, out = tmp_path / "results", tmp_path / "reports"
    save(results, make_record("supsup", "gnu", 0, rows=[[0.9]]))
    save(results, make_record("naive", "gg", 0, rows=[[0.9], [0.5, 0.9]], variants=("default",)))
    (out / "benchmarks").mkdir(parents=True)
    (out / "benchmarks" / "speed.md").write_text("not ours")
    (out / "plots").mkdir()
    (out / "plots" / "mine.png").write_text("not ours either")
    write_report(results, out)
    stale = [next((out / "plots").glob("setting-02-*.csv")),
             next((out / "plots").glob("heatmap-01-naive-*.svg"))]
    for path in results.glob("naive-*/record.json"):
        path.unlink()
    write_report(results, out)  # removes what it wrote before and no longer writes
    assert not any(p.exists() for p in stale)
    assert sorted(p.name for p in (out / "plots").glob("*.png")) == ["mine.png",
        "setting-01-permuted-synthetic-lenet-1-tasks-5-iterations-per-task.png"]
    assert (out / "benchmarks" / "speed.md").read_text() == "not ours"
    assert (out / "plots" / "mine.png").read_text() == "not ours either"


def test_cli_report_errors_are_one_line(tmp_path):
    out = subprocess.run([sys.executable, "-m", "clbench", "report", "--results",
                          str(tmp_path / "none"), "--out", str(tmp_path / "r")],
                         capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert out.returncode != 0
    assert out.stderr.strip().startswith("error: no records under") and len(
        out.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()



REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def committed(tmp_path_factory):
    """`clbench report` over the committed records and reproduce.yaml, in a copy of the
    checkout (local runs lying in results/ are left out: only tracked records count), with
    every chart it drew."""
    if not (REPO / "reports" / ".clbench-report").is_file():
        pytest.skip("not a source checkout with a committed report")
    listed = subprocess.run(["git", "-C", str(REPO), "ls-files", "results"], text=True,
                            capture_output=True)
    if listed.returncode != 0:
        pytest.skip("not a git checkout")
    tmp = tmp_path_factory.mktemp("checkout")
    for name in listed.stdout.split():
        if name.endswith("record.json"):
            target = tmp / name
            target.parent.mkdir(parents=True)
            target.write_bytes((REPO / name).read_bytes())
    for name in ("reproduce.yaml", "README.md"):  # beside results/, as in the checkout
        if (REPO / name).is_file():
            (tmp / name).write_bytes((REPO / name).read_bytes())
    from clbench.report import draw

    charts = []
    original = draw.draw
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp)
        patch.setattr(draw, "draw", lambda chart, kind, folder: charts.append(
            original(chart, kind, folder)) or charts[-1])
        write_report("results", tmp / "reports", Filters())
    return tmp, charts


def test_the_committed_report_matches_the_committed_records(committed):
    tmp, _ = committed
    owned = (REPO / "reports" / ".clbench-report").read_text().split()
    assert (tmp / "reports" / ".clbench-report").read_text().split() == owned
    for name in owned:
        assert (tmp / "reports" / name).read_bytes() == (REPO / "reports" / name).read_bytes(), (
            f"reports/{name} is stale: run clbench report and commit it")
    if (REPO / "README.md").is_file():  # the report refreshed its headline block
        assert (tmp / "README.md").read_bytes() == (REPO / "README.md").read_bytes(), (
            "README.md's headline table is stale: run clbench report and commit it")


def test_the_readme_opens_with_its_settings_and_a_figure(committed):
    tmp, _ = committed
    lines = (tmp / "reports" / "README.md").read_text().splitlines()
    index = lines.index("## Settings")
    assert index < 12 and lines[index + 2].startswith("| # | setting |")
    first = next(i for i, line in enumerate(lines) if line.startswith("!["))
    assert first < 80, f"the first figure is on line {first + 1}"
    settings = [line for line in lines if line.startswith("## ") and line[3].isdigit()]
    assert settings[:2] == ["## 1. PermutedMNIST · LeNet · 250 tasks · 1,000 iterations per task",
                            "## 2. PermutedMNIST · LeNet · 50 tasks · 1,000 iterations per task"]
    text = "\n".join(lines)
    board = text.split(settings[1])[1].split("![")[0]  # GNu and GG methods on one board
    assert "| SupSup (H) · output 100 (+2 other configs below) | GNu | 93.67 ± 0.05 | 3 |" in board
    assert "| PSP | GG | 83.69 ± 0.67 | 3 |" in board
    assert "| Upper Bound | GG | **93.89 ± 0.03** | 3 |" in board  # leads by more than 0.03
    assert max(len(line) for line in lines if line.startswith("## ")) < 100


def _expected(row: dict[str, str], records: list[dict]) -> list[float]:
    """The values a figure's point averages, recomputed from the records."""
    from clbench.report.runs import flat_config

    values = []
    for record in records:
        if row["x_is"] == "after_tasks":
            if row["metric"] == "masks_allocated":
                values.append(record["extras"]["masks_allocated"][int(row["x"]) - 1])
                continue
            point = next(p for p in record["checkpoints"]
                         if p["after_tasks"] == int(row["x"]))
            per_task = point[row["metric"]][row["variant"]]
            values.append(sum(per_task) / len(per_task) * 100)
        else:
            values.append(record["final"][row["variant"]][row["metric"]] * 100)
            if row["x_is"].startswith("bytes."):
                encoding = row["x_is"].removeprefix("bytes.")
                assert float(row["x"]) == pytest.approx(
                    record["checkpoints"][-1]["bytes"][encoding]["bytes"], rel=0.5)
            elif row["x_is"]:
                assert float(row["x"]) == float(flat_config(record["config"])[row["x_is"]])
    return values


def test_every_figures_numbers_equal_the_records(committed):
    import json
    import statistics

    tmp, _ = committed
    by_config: dict[str, list[dict]] = {}
    for path in (tmp / "results").glob("*/record.json"):
        record = json.loads(path.read_text())
        by_config.setdefault(RunConfig.from_dict(record["config"]).group_key, []).append(record)
    from clbench.report import reproduce

    experiments = reproduce.load(tmp / "reproduce.yaml", published_values.load())
    checked = 0
    for table in sorted((tmp / "reports" / "plots").glob("*.csv")):
        # an experiment's figure shows the records carrying its tags; a setting's, all
        owner = next((e for e in experiments if table.stem.startswith(f"{e.id}-")), None)
        for row in (r for rows in csv_rows(table, key="series", many=True).values()
                    for r in rows):
            if row["status"] != "measured":
                continue
            records = [r for r in by_config[row["config"]]
                       if owner is None or owner.selects(r["config"]["tags"])]
            values = _expected(row, records)
            assert int(row["n"]) == len(values), table.name
            assert float(row["mean"]) == pytest.approx(statistics.fmean(values), abs=1e-6), (
                table.name, row["series"], row["x"])
            if len(values) > 1:
                assert float(row["std"]) == pytest.approx(statistics.stdev(values), abs=1e-6)
            checked += 1
    assert checked > 300


PAPER_FIGURES = {  # experiment id -> figures drawn beside it
    "permuted-lenet-250": ["fig3"], "permuted-lenet-50": ["fig3"], "nns-100": ["masks"],
    "output-size-50": ["fig6"], "rotated-fc1024-36": ["fig5"], "permuted-fc1024-250": ["fig3"],
    "permuted-lenet-2500": ["fig4"], "hopsupsup-split-mnist": ["recovery"],
    "split-cifar10-jpg-gg": ["fig2"], "exssnet-split-mnist": ["density"],
    "exssnet-permuted-mnist": ["density"]}


def test_the_reproduction_page_shows_the_papers_figures_beside_their_experiments(committed):
    tmp, _ = committed
    page = (tmp / "reports" / "REPRODUCTION.md").read_text()
    sections = {s.split("- id: `")[1].split("`")[0]: s for s in page.split("\n## ")[1:]
                if "- id: `" in s}
    for ident, stems in PAPER_FIGURES.items():
        for stem in stems:
            assert f"(plots/{ident}-{stem}.png)" in sections[ident], ident
            assert f"(plots/{ident}-{stem}.csv)" in sections[ident], ident
    fig4 = csv_rows(tmp / "reports" / "plots" / "permuted-lenet-2500-fig4.csv", key="series",
                    many=True)
    for series in ("SupSup (GNu, H)", "SupSup (GNu, G)"):  # both panels at every point
        points = [(r["metric"], r["x"]) for r in fig4[series] if r["status"] == "measured"]
        assert points == [(m, str(x)) for m in ("accuracy", "task_inference")
                          for x in (10, 500, 1000, 1500, 2000, 2500)], series
    assert {r["status"] for r in fig4["SupSup (NNs): not run yet"]} == {"not run yet"}
    assert "not run yet: SupSup (NNs)" in sections["permuted-lenet-2500"]
    fig3 = csv_rows(tmp / "reports" / "plots" / "permuted-lenet-250-fig3.csv", key="series")
    assert not any(s.startswith("published:") for s in fig3)  # 94.91 % is likely FC-1024's
    fc = csv_rows(tmp / "reports" / "plots" / "permuted-fc1024-250-fig3.csv", key="series")
    (star,) = [row for s, row in fc.items() if s.startswith("published:")]
    assert (star["x"], float(star["mean"])) == ("250", 94.91) and "likely FC-1024" in star["series"]
    import json

    tags = {"paper-gnu-250", "paper-gnu-250-2threads", "permuted-lenet-250-gg"}
    configs = [json.loads(p.read_text())["config"] for p in (tmp / "results").glob("*/record.json")]
    missing = []
    for label, method in (("BatchE (GG)", "batche"), ("PSP (GG)", "psp"),
                          ("Upper Bound (GG)", "upper-bound")):
        if any(c["method"] == method and tags & set(c["tags"]) for c in configs):
            assert fig3[label]["status"] in ("measured", "no task_inference"), label
        else:
            assert fig3[f"{label}: not run yet"]["status"] == "not run yet", label
            missing.append(label)
    if missing:
        assert f"not run yet: {', '.join(missing)}" in sections["permuted-lenet-250"]


def test_a_tasks_figures_table_holds_its_numbers_at_the_sparse_series_points(committed):
    import csv

    tmp, _ = committed
    page = (tmp / "reports" / "REPRODUCTION.md").read_text()
    tables = 0
    for block in page.split("Plotted numbers: [CSV](plots/")[1:]:
        stem = block.split(".csv)")[0]
        lines = block.split("\n\n", 2)[1].splitlines() if "\n\n| series |" in block[:400] else []
        if not lines:
            continue
        tables += 1
        with (tmp / "reports" / "plots" / f"{stem}.csv").open() as handle:
            points = {(r["series"], r["metric"].replace("_", " "), r["x"]):
                      f"{float(r['mean']):.2f}" + (f" ± {float(r['std']):.2f}" if r["std"] else "")
                      for r in csv.DictReader(handle) if r["status"] == "measured"}
        header = [c.strip() for c in lines[0].strip("|").split("|")]
        xs = [h.removeprefix("after ") for h in header[2:]]
        sparse = {x for (series, metric, x) in points
                  if sum(k[:2] == (series, metric) for k in points) <= 12}
        assert set(xs) == (sparse or set(xs)), stem  # the columns: the sparse series' points
        for line in lines[2:]:
            series, metric, *cells = [c.strip() for c in line.strip("|").split("|")]
            for x, cell in zip(xs, cells, strict=True):
                value = points.get((series, metric, x))
                assert cell == (value or "—"), (stem, series, x)
    assert tables >= 4


def test_every_chart_is_readable(committed):
    from matplotlib.image import imread

    from clbench.report.draw import MAX_HEIGHT
    from clbench.report.figures import MAX_SERIES

    tmp, charts = committed
    assert len(charts) >= 9 + 11
    colours: dict[str, set] = {}
    for chart in charts:
        height, width = imread(tmp / "reports" / "plots" / f"{chart.stem}.png").shape[:2]
        assert (width, height) == chart.size and height <= MAX_HEIGHT, chart.stem
        for panel in chart.panels:
            assert len(panel.series) <= MAX_SERIES and panel.legend_entries() <= 10
            assert any(s.points for s in panel.series), f"{chart.stem}: an empty panel"
            if panel.percent:
                assert 0 <= panel.limits[0] < panel.limits[1] <= 100, chart.stem
            for s in panel.series:
                if s.look is not None:
                    method = s.label.split(" (")[0].split(" · ")[0]
                    colours.setdefault(method, set()).add(s.look.color)
    # one colour per method (tints of it where a panel shows several of its configs)
    assert len({min(c) for c in colours["BatchE"]}) == 1
    assert len({min(c) for c in colours["Upper Bound"]}) == 1


def test_exported_rows_rebuild_the_reports_tables_exactly(report, tmp_path):
    """`clbench export` of runs and of tasks, read back by pandas and aggregated over seeds by
    clbench.results, gives every number of the report's tables (as the CSVs print them)."""
    import pandas as pd

    from clbench.report.tables import number as _number
    from clbench.results import aggregate

    root, out, _ = report
    frames = {}
    for what, fmt in (("runs", "csv"), ("runs", "jsonl"), ("tasks", "csv")):
        target = tmp_path / f"{what}.{fmt}"
        done = subprocess.run([sys.executable, "-m", "clbench", "export", "--what", what,
                               "--format", fmt, "--results", str(root), "--out", str(target)],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert done.stderr.count("skipped ") == 4  # as the report: each unusable record named
        frames[what, fmt] = (pd.read_csv(target) if fmt == "csv"
                             else pd.read_json(target, lines=True, dtype=False))
    assert len(frames["runs", "csv"]) == 9 and len(frames["tasks", "csv"]) == 30
    for fmt in ("csv", "jsonl"):
        stats = aggregate(frames["runs", fmt]).set_index(["group", "variant"])
        checked = 0
        for slug, columns in (("accuracy-bytes", {"accuracy_pct": "accuracy",
                                                  "bytes_bits": "bytes_bits"}),
                              ("task-inference", {"task_inference_pct": "task_inference",
                                                  "oracle_accuracy_pct": "oracle_accuracy"}),
                              ("forgetting", {"forgetting_pp": "forgetting",
                                              "backward_transfer_pp": "backward_transfer"})):
            for row in csv_rows(out / "tables" / f"{slug}.csv").values():
                mine = stats.loc[(row["config"], row["variant"])]
                for table_column, metric in columns.items():
                    for stat in ("mean", "std"):
                        value = mine[f"{metric}_{stat}"]
                        shown = _number(None if pd.isna(value) else float(value))
                        assert row[f"{table_column}_{stat}"] == shown, (slug, row["group"])
                        checked += 1
        assert checked == 3 * 4 * 2 * 2
    tasks = frames["tasks", "csv"]
    per_run = tasks.groupby(["record", "group", "variant", "seed", "after_tasks"],
                            as_index=False)["accuracy"].mean()
    curves = aggregate(per_run, by=["group", "variant", "after_tasks"], metrics=["accuracy"])
    curves = curves.set_index(["group", "variant", "after_tasks"])
    compared = 0
    for row in csv_rows(out / "tables" / "accuracy-by-tasks.csv").values():
        shown = [int(k.split("_")[1]) for k in row if k.startswith("after_") and k.endswith(
            "_mean")]
        assert shown == [2, 3]  # each group's last evaluation point
        for after in shown:
            compared += 1
            if (row["config"], row["variant"], after) in curves.index:
                mean = curves.loc[(row["config"], row["variant"], after), "accuracy_mean"]
                assert row[f"after_{after}_mean"] == _number(float(mean))
            else:
                assert row[f"after_{after}_mean"] == ""
    assert compared == 4 * 2

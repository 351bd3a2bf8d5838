"""reproduce.yaml and REPRODUCTION.md: the committed file parses and its commands use real
options, malformed files give one-line errors that name the fix, and the page holds
hand-computed numbers, "not run yet", gaps to references, and is deterministic."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from clbench.cli import app
from clbench.config import RunConfig
from clbench.errors import ClbenchError
from clbench.report import Filters, published, reproduce, write_report
from clbench.report.runs import collect
from clbench.store import Store

REPO = Path(__file__).resolve().parent.parent


def record(method: str, scenario: str, seed: int, accuracy: float, *, tags: tuple[str, ...],
           variants: tuple[str, ...] = ("default",), tasks: int = 2,
           inference: float | None = None, extras: dict | None = None,
           **config: object) -> dict:
    """A complete record whose every task has ``accuracy`` at its one checkpoint."""
    cfg = {"method": method, "scenario": scenario, "benchmark": "permuted",
           "dataset": "synthetic", "data_identity": {"name": "synthetic", "train": 10,
                                                     "test": 10, "checksum": "x", "note": ""},
           "model": "lenet", "params": {"lr": 0.1}, "density": None, "label_view": "task",
           "tasks": tasks, "iters": 5, "epochs": None, "batch_size": 8, "eval_batch_size": 8,
           "seed": seed, "data_seed": seed, "threads": 1, "device": "cpu", "eval_at": [tasks],
           "val_fraction": 0.0, "plugin": None, "tags": list(tags), **config}
    row = [accuracy] * tasks
    final = {"accuracy": accuracy, "oracle_accuracy": accuracy, "task_inference": inference,
             "forgetting": 0.0, "backward_transfer": 0.0}
    return {"schema_version": 1, "run_id": RunConfig.from_dict(cfg).run_id,
            "status": "complete", "error": None, "config": cfg, "variants": list(variants),
            "diagonal": row, "final": {v: final for v in variants}, "extras": extras or {},
            "checkpoints": [{"after_tasks": tasks, "oracle": row,
                             "accuracy": {v: row for v in variants},
                             "task_inference": {v: None for v in variants},
                             "bytes": {"bits": {"bytes": 1000 * (seed + 1), "formula": "x"}}}],
            "timing": {"setup_s": 1.0, "train_s": 60.0, "eval_s": 59.0, "total_s": 120.0,
                       "train_s_per_task": [30.0] * tasks}}


def fixture_records(root: Path) -> None:
    """exp-a: supsup GNu H,G over seeds 0-2 at 80, 90, 85 % and a failed run; exp-b: naive GG
    over two seeds with per-task recovery extras; exp-paper: one 250-task run on mnist with
    FC-1024 (the paper's 94.91 % applies) and one with LeNet (it does not)."""
    store = Store(root)
    for seed, acc in ((0, 0.8), (1, 0.9), (2, 0.85)):
        store.write(record("supsup", "gnu", seed, acc, tags=("exp-a",), variants=("H", "G"),
                           inference=0.5 + 0.25 * seed))
    failed = record("supsup", "gnu", 9, 0.1, tags=("exp-a",))
    failed.update(status="failed", error="RuntimeError: boom")
    store.write(failed)
    for seed, bits in ((0, [1.0, 0.98]), (1, [0.99, 0.96])):
        store.write(record("naive", "gg", seed, 0.6 + 0.1 * seed, tags=("exp-b", "other"),
                           extras={"final": {"bits": bits}, "masks": [1, 2, 3 + seed]}))
    store.write(record("supsup", "gnu", 1, 0.95, tags=("exp-paper",), tasks=250,
                       dataset="mnist", variants=("H",), model="fc1024"))
    store.write(record("supsup", "gnu", 1, 0.93, tags=("exp-paper",), tasks=250,
                       dataset="mnist", variants=("H",)))


EXPERIMENTS = """\
experiments:
  - id: a
    title: SupSup GNu
    tag: exp-a
    commands: ["clbench sweep --method supsup --scenario gnu --grid seed=0,1,2 --tag exp-a"]
    budget: 10 min
    headline: true
    reference:
      - {label: a paper value, accuracy: 90, source: "Fig. 1", setting: {method: supsup}}
  - id: never
    title: Not run
    tag: exp-none
    commands: ["clbench sweep --method psp --tag exp-none"]
    budget: 1 h
    headline: true
    notes: nothing yet
  - id: b
    title: Naive
    tag: exp-b
    commands: ["clbench sweep --method naive --grid seed=0,1 --tag=exp-b"]
    budget: 5 min
    extras:
      - {label: worst bits (%), key: final.bits, reduce: min, scale: 100}
      - {label: masks, key: masks, digits: 0}
    notes: A note.
  - id: paper
    title: The paper's 250 tasks
    tag: exp-paper
    commands: ["clbench sweep --method supsup --tasks 250 --tag exp-paper"]
    budget: 1 h
    reference: [{published: permutedmnist-gnu-250-supsup}]
    notes: Close.
"""


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("results")
    fixture_records(root)
    path = root.parent / "experiments.yaml"
    path.write_text(EXPERIMENTS)
    experiments = reproduce.load(path, published.load())
    return reproduce.render(experiments, collect(root), path.name)


def section(page: str, number: int) -> str:
    return page.split(f"\n## {number}. ")[1].split("\n## ")[0]


def test_the_page_holds_hand_computed_means_and_stds(page):
    a = section(page, 1)
    # final accuracies 80, 90, 85 -> 85 ± 5; task inference 50, 75, 100 -> 75 ± 25;
    # bits 1000, 2000, 3000 -> 2000 ± 1000
    assert ("| SupSup (GNu, H) | 3 | 0, 1, 2 | 2 | 85.00 ± 5.00 | "
            "75.00 ± 25.00 | bits 2.00 ± 1.00 kB |") in a
    assert "status: 3 records found: 6 runs in 2 groups, 1 failed or unreadable" in a
    assert "machine time: 6.0 min at 1 thread (3 records)" in a  # 3 × 120 s
    assert "\nclbench sweep --method supsup --scenario gnu --grid seed=0,1,2 --tag exp-a\n" in a
    # both variants match the reference's setting: 85 - 90 = -5 points, and no note says why
    assert a.count("| 85.00 ± 5.00 | -5.00 |") == 2
    assert "**A gap above 2 points has no note" in a
    b = section(page, 3)
    # accuracy 60, 70 -> 65 ± 7.07; worst task's bits 98, 96 -> 97 ± 1.41; last mask count
    # 3, 4 -> 3.5 ± 0.71, shown with 0 digits
    assert "| 65.00 ± 7.07 | 97.00 ± 1.41 | 4 ± 1 | bits 1.50 ± 0.71 kB |" in b
    assert "task inference" not in b and "Notes: A note." in b
    assert "_None: no paper value applies" in b and "no note" not in b
    paper = section(page, 4)
    assert "| 94.91 % | supsup, text:" in paper and "| 95.00 | +0.09 |" in paper
    assert "93.00 |" in paper and "| 93.00 | -1.91 |" not in paper  # LeNet: not compared


def test_an_experiment_without_records_is_not_run_yet(page):
    never = section(page, 2)
    assert "status: not run yet" in never and "_No runs yet._" in never
    assert "machine time: —" in never
    assert "| 2 | Not run | exp-none | not run yet | 1 h | — |" in page


def test_the_page_is_deterministic_and_written_beside_the_report(tmp_path):
    root = tmp_path / "results"
    fixture_records(root)
    path = tmp_path / "reproduce.yaml"  # found beside the results folder
    path.write_text(EXPERIMENTS)
    summary = write_report(root, tmp_path / "out", Filters(method=("naive",)))
    written = (tmp_path / "out" / "REPRODUCTION.md").read_bytes()
    assert "reproduction: 4 experiments from" in summary
    assert "REPRODUCTION.md" in (tmp_path / "out" / ".clbench-report").read_text().split()
    # the filters narrow the report, not the page, which depends on the records and file only
    again = reproduce.render(reproduce.load(path, published.load()), collect(root), path.name)
    assert written == again.encode() and b"| 85.00 \xc2\xb1 5.00 |" in written
    path.unlink()
    write_report(root, tmp_path / "out", Filters(method=("naive",)))
    assert not (tmp_path / "out" / "REPRODUCTION.md").exists()  # the report owned it


def test_the_headline_has_a_row_per_group_of_the_marked_experiments(page):
    head = page.split("\n## Headline\n")[1].split("\n## ")[0]
    rows = [line for line in head.splitlines() if line.startswith("| ") and "---" not in line]
    assert rows[0].startswith("| # | experiment | group |")
    assert rows[1:] == [
        "| 1 | a | SupSup (GNu, H) | 3 | 85.00 ± 5.00 "
        "| 75.00 ± 25.00 | 90.00 % | -5.00 |",
        "| 1 | a | SupSup (GNu, G) | 3 | 85.00 ± 5.00 "
        "| 75.00 ± 25.00 | 90.00 % | -5.00 |",
        "| 2 | never | not run yet | — | — | — | — | — |",
    ]  # experiments b and paper are not marked


def test_the_repositorys_report_refreshes_only_its_readme_block(tmp_path):
    root = tmp_path / "results"
    fixture_records(root)
    (tmp_path / "reproduce.yaml").write_text(EXPERIMENTS)
    readme = tmp_path / "README.md"
    text = (f"# Title\n\nbefore\n{reproduce.README_START}\nold table\n"
            f"{reproduce.README_END}\nafter\n")
    readme.write_text(text)
    write_report(root, tmp_path / "elsewhere")  # another --out: the README is not touched
    assert readme.read_text() == text
    summary = write_report(root, tmp_path / "reports")
    new = readme.read_text()
    assert "headline table updated in" in summary
    assert new.startswith("# Title\n\nbefore\n<!-- reproduction-headline:start -->\n| # |")
    assert new.endswith("| 2 | never | not run yet | — | — | — | — | — |\n"
                        "<!-- reproduction-headline:end -->\nafter\n")
    assert "old table" not in new
    assert "headline" not in write_report(root, tmp_path / "reports")  # unchanged: no write
    assert reproduce.with_headline("no markers here", "| t |") is None


BAD = [
    ("experiments: [", "is not valid YAML"),
    ("{}", "non-empty list 'experiments'"),
    ("experiments:\n  - {id: x, title: t, tag: t, commands: ['clbench sweep --tag t']}",
     "experiment 1: missing budget: add it"),
    ("experiments:\n  - {id: x, title: t, tag: t, budget: 1 h, comands: [a]}",
     "missing commands"),
    ("experiments:\n  - {id: x, title: t, tag: t, budget: 1 h, note: n,"
     " commands: ['clbench sweep --tag t']}", "unknown key note: use id, title"),
    ("experiments:\n  - {id: x, title: t, tag: t, budget: 1 h, commands: ['clbench run --tag t']}",
     "start it with 'clbench sweep'"),
    ("experiments:\n  - {id: x, title: t, tag: t, budget: 1 h, commands: ['clbench sweep']}",
     "add --tag t"),
    ("experiments:\n  - {id: x, title: t, tag: t, budget: 1 h, commands: ['clbench sweep --tag t'],"
     " reference: [{published: nope}]}", "no published value 'nope'"),
    ("experiments:\n  - {id: x, title: t, tag: t, budget: 1 h, commands: ['clbench sweep --tag t'],"
     " reference: [{label: l, source: s, accuracy: high}]}", "accuracy must be a number"),
    ("experiments:\n  - {id: x, title: t, tag: t, budget: 1 h, commands: ['clbench sweep --tag t'],"
     " extras: [{label: l, key: k, reduce: median}]}", "reduce 'median': use one of last"),
    ("experiments:\n  - {id: x, title: t, tag: t, budget: 1 h, commands: ['clbench sweep --tag t']}"
     "\n  - {id: x, title: u, tag: u, budget: 1 h, commands: ['clbench sweep --tag u']}",
     "id 'x' is used twice"),
    ("experiments:\n  - {id: x, title: t, tag: t, budget: 1 h, commands: ['clbench sweep --tag t'],"
     " headline: yes please}", "headline: expected true or false"),
    ("experiments:\n  - {id: x, title: t, tag: t, budget: 1 h, commands: ['clbench sweep --tag t'],"
     " figures: [{kind: pie, title: p}]}", "figure 1: kind 'pie': use one of tasks, ablation"),
    ("experiments:\n  - {id: x, title: t, tag: t, budget: 1 h, commands: ['clbench sweep --tag t'],"
     " figures: [{kind: ablation, title: p}]}", "an ablation needs x (a config field)"),
    ("experiments:\n  - {id: x, title: t, tag: t, budget: 1 h, commands: ['clbench sweep --tag t'],"
     " figures: [{kind: tasks, title: p, y: [speed]}]}", "y ['speed']: use accuracy"),
    ("experiments:\n  - {id: x, title: t, tag: t, budget: 1 h, commands: ['clbench sweep --tag t'],"
     " figures: [{kind: tasks, title: p, series: [{label: a}]}]}", "needs a label and a select"),
]


@pytest.mark.parametrize(("text", "message"), BAD)
def test_malformed_files_give_one_line_errors_that_name_the_fix(tmp_path, text, message):
    path = tmp_path / "reproduce.yaml"
    path.write_text(text)
    with pytest.raises(ClbenchError) as caught:
        reproduce.load(path, published.load())
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_the_cli_reports_a_malformed_file_in_one_line(tmp_path):
    fixture_records(tmp_path / "results")
    (tmp_path / "bad.yaml").write_text("experiments: [{id: x}]")
    result = CliRunner().invoke(app, ["report", "--results", str(tmp_path / "results"),
                                      "--out", str(tmp_path / "out"),
                                      "--reproduce", str(tmp_path / "bad.yaml")])
    assert result.exit_code == 2
    assert result.output.startswith("error: ") and "missing title, tag, commands, budget" in (
        result.output) and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
    missing = CliRunner().invoke(app, ["report", "--results", str(tmp_path / "results"),
                                       "--reproduce", str(tmp_path / "none.yaml")])
    assert "no such file" in missing.output


def sweep_options() -> set[str]:
    command = typer.main.get_command(app).commands["sweep"]
    return {opt for param in command.params for opt in param.opts + param.secondary_opts}


@pytest.mark.skipif(not (REPO / "reproduce.yaml").is_file(), reason="not a source checkout")
def test_the_committed_file_parses_and_its_commands_use_real_options():
    experiments = reproduce.load(REPO / "reproduce.yaml", published.load())
    assert [e.tag for e in experiments[:7]] == [
        "paper-gnu-250", "permuted-lenet-50", "nns-100", "output-size-50", "rotated-fc1024-36",
        "hopsupsup-split-mnist", "split-cifar10-jpg-gg"]  # issue 10's priority order
    assert {"exssnet-split-mnist", "exssnet-permuted-mnist",
            "exssnet-split-cifar10-jpg"} <= {e.tag for e in experiments}
    options = sweep_options()
    for experiment in experiments:
        for command in experiment.commands:
            used = {w.split("=")[0] for w in shlex.split(command) if w.startswith("--")}
            assert used <= options, f"{experiment.id}: {used - options}"
            assert "--data-root" in used, experiment.id

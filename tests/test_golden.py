"""Golden outputs: every registered built-in method in every scenario it declares, two tiny
tasks, must give the numbers, bytes and run ids recorded in ``tests/golden/outputs.json``; and
every committed record's run id must follow from its config.

The golden file was written by the code as it stood before the structure work (issue 16), so a
refactor that changes the order of random draws, a default or the run-id hash fails here.
Regenerate it only for a deliberate change of numbers, and say why in the commit:
``python tests/test_golden.py`` (one thread, as in CI).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"  # the real data beside the checkout (CI has it)
GOLDEN = ROOT / "tests" / "golden" / "outputs.json"
#: One method per convolutional code path (supermask net, its weight-training variant, BatchE's
#: layers, the plain net, per-task heads); a run on cifar10-jpg costs about a minute at 1 thread.
CONV_CASES = ("supsup", "exssnet", "batche", "upper-bound", "lower-bound")
COMMON = ["--tasks", "2", "--iters", "12", "--seed", "0", "--threads", "1",
          "--eval-batch-size", "200", "--no-progress"]


def cases() -> list[tuple[str, list[str]]]:
    """(case id, ``clbench run`` arguments): each built-in method in each declared scenario on
    mnist-5k with its defaults, plus the convolutional net on ``synthetic`` where declared, plus
    the supermask options whose code paths defaults do not reach."""
    from clbench import registry

    out: list[tuple[str, list[str]]] = []
    for name, method in sorted(registry.methods().items()):
        if not isinstance(method, type) or method.source != "built-in":
            continue
        for scenario in sorted(method.scenarios):
            out.append((f"{name}-{scenario}", ["--method", name, "--scenario", scenario,
                                               "--dataset", "mnist-5k"]))
        if name in CONV_CASES:
            out.append((f"{name}-gg-gemresnet18", [
                "--method", name, "--scenario", "gg", "--dataset", "cifar10-jpg",
                "--data-root", str(SHARED), "--benchmark", "split", "--model", "gemresnet18",
                "--iters", "3"]))
    extra = {
        "supsup-gnu-G-binary": ["--scenario", "gnu", "--param", "objective=H,G",
                                "--param", "output_size=30", "--param", "inference=binary",
                                "--tasks", "3"],
        "supsup-gnu-oneshot-5": ["--scenario", "gnu", "--param", "output_size=30",
                                 "--param", "infer_batch=5", "--tasks", "3"],
        "supsup-gg-topk-transfer": ["--scenario", "gg", "--param", "mask=topk",
                                    "--param", "init=transfer", "--density", "0.1"],
        "supsup-gg-topk-er": ["--scenario", "gg", "--param", "mask=topk",
                              "--param", "er_scale=2"],
        "supsup-nns-check": ["--scenario", "nns", "--param", "output_size=20",
                             "--param", "check_every=4", "--tasks", "3"],
        "exssnet-gnu-knn": ["--method", "exssnet", "--scenario", "gnu", "--param", "kkt=best",
                            "--param", "output_size=30", "--tasks", "3"],
    }
    for case, args in extra.items():
        method = [] if "--method" in args else ["--method", "supsup"]
        out.append((case, method + ["--dataset", "mnist-5k", *args]))
    return out


def run_case(args: list[str], results: Path) -> dict:
    """Run one case through the command line; the record's numbers, or the refusal."""
    from typer.testing import CliRunner

    from clbench.cli import app

    result = CliRunner().invoke(app, ["run", *COMMON, *args, "--results", str(results)])
    if result.exit_code != 0:
        text = (result.stdout or "") + (getattr(result, "stderr", "") or "")
        lines = [line for line in text.splitlines() if line.startswith("error:")]
        return {"exit": result.exit_code, "error": lines[-1] if lines else text.strip()}
    records = sorted(results.glob("*/record.json"), key=lambda p: p.stat().st_mtime)
    record = json.loads(records[-1].read_text())
    last = record["checkpoints"][-1]
    return {
        "run_id": record["run_id"],
        "diagonal": record["diagonal"],
        "final": record["final"],
        "bytes": last.get("bytes", {}),
        "task_inference": last["task_inference"],
    }


def _golden() -> dict:
    return json.loads(GOLDEN.read_text())


@pytest.fixture(scope="module")
def golden() -> dict:
    return _golden()


def test_every_builtin_method_and_scenario_has_a_golden_case(golden):
    assert sorted(golden) == sorted(case for case, _ in cases())


@pytest.mark.parametrize(("case", "args"), cases(), ids=[c for c, _ in cases()])
def test_golden_outputs_unchanged(tmp_path, golden, case, args):
    if "cifar10-jpg" in args and not (SHARED / "cifar10-jpg").is_dir():
        pytest.skip(f"the cifar10-jpg copy is not at {SHARED}")
    got = run_case(args, tmp_path / "results")
    assert got == golden[case]


def committed_records() -> list[Path]:
    return sorted((ROOT / "results").glob("*/record.json"))


def test_committed_records_keep_their_run_ids():
    from clbench.config import RunConfig

    records = committed_records()
    assert len(records) >= 90  # the reference records committed under results/
    for path in records:
        record = json.loads(path.read_text())
        config = RunConfig.from_dict(record["config"])
        assert config.run_id == record["run_id"], path
        assert path.parent.name.endswith(record["run_id"]), path


def test_a_checkpoint_written_before_the_structure_work_resumes(tmp_path):
    """``checkpoint-supsup-gnu-after-2-of-3.pt`` was written by the code of commit 8a1bcac
    (a 3-task SupSup GNu run stopped while evaluating task 3); the same command resumes it after
    task 2 and ends with the uninterrupted run's numbers."""
    import shutil

    from typer.testing import CliRunner

    from clbench.cli import app

    expected = json.loads((GOLDEN.parent / "checkpoint-supsup-gnu-expected.json").read_text())
    folder = tmp_path / "results" / f"supsup-gnu-permuted-mnist-5k-s0-{expected['run_id']}"
    folder.mkdir(parents=True)
    shutil.copy(GOLDEN.parent / "checkpoint-supsup-gnu-after-2-of-3.pt", folder / "checkpoint.pt")
    result = CliRunner().invoke(app, [
        "run", "--method", "supsup", "--scenario", "gnu", "--dataset", "mnist-5k", "--tasks", "3",
        "--iters", "12", "--threads", "1", "--seed", "0", "--eval-batch-size", "200",
        "--param", "output_size=30", "--param", "objective=H,G", "--no-progress",
        "--results", str(tmp_path / "results")])
    assert result.exit_code == 0, result.output
    assert "resuming after task 2 of 3" in result.output
    record = json.loads((folder / "record.json").read_text())
    assert record["resumes"][0]["at_task"] == 3
    for key in ("run_id", "config", "diagonal", "checkpoints", "final"):
        assert record[key] == expected[key], key
    assert not (folder / "checkpoint.pt").exists()


def write() -> None:
    """Regenerate the golden file with the code as it stands."""
    import tempfile

    import torch

    torch.set_num_threads(1)
    out = {}
    for case, args in cases():
        with tempfile.TemporaryDirectory() as tmp:
            out[case] = run_case(args, Path(tmp) / "results")
        print(case, out[case].get("error") or out[case]["final"], flush=True)
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(write())

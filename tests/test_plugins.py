"""Plugins (issue #7): the example package through its entry point, file plugins (the method and
the benchmark docs/plugins.md shows, run as they are printed there), and broken plugins that stop
nothing else. CLI subprocesses start outside the checkout, with one thread and tiny runs."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "plugins.md"
PACKAGE = ROOT / "examples" / "plugin-package"
NEUTRAL = tempfile.gettempdir()
SMALL = ["--dataset", "synthetic", "--tasks", "2", "--iters", "20", "--threads", "1",
         "--no-progress"]
LENET_PARAMS = 784 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10  # synthetic: 10 outputs

EXTRA_FILES = {
    "broken.py": 'raise RuntimeError("broken on purpose:\\nsecond line")\n',
    "exits.py": "import sys\n\nsys.exit(3)\n",
    "supsup.py": "import no_such_module_anywhere\n",  # a broken file named like a built-in
    "clash.py": """\
from clbench.method import Method
from clbench.registry import register_method


@register_method
class Impostor(Method):
    name = "supsup"
""",
    "needy.py": """\
from clbench.method import Method, Requirements
from clbench.registry import register_method


@register_method
class Needy(Method):
    name = "needy"
    description = "needs two classes per task at most"
    requires = Requirements(max_classes_per_task=2)
""",
}


def clbench(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "clbench", *map(str, args)],
                          capture_output=True, text=True, timeout=300, cwd=NEUTRAL, env=env)


def environment(results: Path, pythonpath: Path | None = None) -> dict[str, str]:
    """This process's environment with a results folder and, optionally, a path prepended."""
    env = {**os.environ, "CLBENCH_RESULTS": str(results)}
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(pythonpath), env.get("PYTHONPATH")) if p)
    return env


def doc_files() -> dict[str, str]:
    """The plugin files docs/plugins.md prints, by name (``<!-- plugin-file: NAME -->``)."""
    pattern = re.compile(r"<!-- plugin-file: (\S+) -->\n```python\n(.*?)```", re.S)
    return dict(pattern.findall(DOC.read_text()))


def one_line_error(out: subprocess.CompletedProcess) -> str:
    assert out.returncode == 2, (out.stdout, out.stderr)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr
    return lines[0]


def listed(stdout: str, name: str) -> str:
    """The ``clbench list`` line of ``name``."""
    (line,) = [ln for ln in stdout.splitlines() if ln.split()[:1] == [name]]
    return line


def record_of(results: Path, method: str) -> dict:
    (path,) = results.glob(f"{method}-*/record.json")
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("plugins")
    paths = {}
    for name, text in {**doc_files(), **EXTRA_FILES}.items():
        paths[name] = folder / name
        paths[name].write_text(text)
    return paths


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The example package, installed without build isolation into a temporary target."""
    work = tmp_path_factory.mktemp("package")
    source = work / "source"  # a copy: building writes build/ and *.egg-info into the source
    shutil.copytree(PACKAGE, source,
                    ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = work / "target"
    out = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-build-isolation", "--no-deps",
         "--no-index", "--disable-pip-version-check", "--quiet", "--target", str(target),
         str(source)],
        capture_output=True, text=True, timeout=300, cwd=NEUTRAL)
    assert out.returncode == 0, out.stderr
    return target


def test_docs_show_a_complete_method_under_40_lines():
    shown = doc_files()
    assert set(shown) == {"finetune.py", "flips.py", "topk_masks.py"}
    assert len(shown["finetune.py"].splitlines()) < 40
    assert len(shown["topk_masks.py"].splitlines()) < 60  # on the supermask library


def test_the_docs_supermask_method_learns_and_infers_tasks(files, tmp_path):
    """The doc's method on the supermask library, in gnu: it learns each task well above chance
    (10 classes: 0.1), One-Shot finds the task of most test batches, its bytes follow its rule."""
    results = tmp_path / "results"
    run = clbench("run", "--plugin", files["topk_masks.py"], "--method", "my-topk-masks",
                  "--scenario", "gnu", *SMALL, env=environment(results))
    assert run.returncode == 0, run.stderr
    record = record_of(results, "my-topk-masks")
    assert record["status"] == "complete" and min(record["diagonal"]) > 0.5
    last = record["checkpoints"][-1]
    assert min(last["task_inference"]["default"]) > 0.5
    masks = -(-(784 * 300 + 300 * 100 + 100 * 10) // 8)
    assert last["bytes"] == {"bits": {"bytes": 8 + 2 * masks, "formula": "seed-and-packed-masks"}}


def test_package_and_file_plugins_list_run_and_report(installed, files, tmp_path):
    """The example package (entry point) and the docs' file plugins, a broken file among them,
    each through list and run, then one report over both records."""
    results = tmp_path / "results"
    env = environment(results, installed)
    listing = clbench("list", "methods", "-v", env=env)
    assert listing.returncode == 0, listing.stderr
    assert "[gg,gns,gnu]" in listed(listing.stdout, "l2")
    assert "source: package clbench-l2" in listing.stdout
    assert "--param strength (float, default 1.0)" in listing.stdout

    run = clbench("run", "--method", "l2", "--scenario", "gg", *SMALL, "--param", "strength=3",
                  env=env)
    assert run.returncode == 0, run.stderr
    record = record_of(results, "l2")
    assert record["status"] == "complete" and record["config"]["plugin"] is None
    assert record["config"]["params"]["strength"] == 3.0
    assert min(record["diagonal"]) > 0.5  # it learns (10 classes: chance is 0.1)
    drift = record["extras"]["l2_drift"]
    assert len(drift) == 2 and 0 < drift[1] < drift[0]  # the pull holds task 2's weights
    assert record["checkpoints"][-1]["bytes"] == {
        "fp32": {"bytes": 2 * 4 * LENET_PARAMS, "formula": "fp32-parameters-and-anchor"}}

    paths = [files[n] for n in ("finetune.py", "flips.py", "broken.py")]
    plugins = [arg for path in paths for arg in ("--plugin", path)]
    listing = clbench("list", *plugins, env=env)
    assert listing.returncode == 0, listing.stderr
    assert "[gg,gns,gnu]" in listed(listing.stdout, "my-finetune")
    assert "at most 4 tasks" in listed(listing.stdout, "flips")
    assert "BROKEN" in listed(listing.stdout, "broken") and "l2" in listing.stdout

    run = clbench("run", *plugins, "--method", "my-finetune", "--benchmark", "flips",
                  "--scenario", "gnu", *SMALL, env=env)
    assert run.returncode == 0, run.stderr
    record = record_of(results, "my-finetune")
    config = record["config"]
    assert record["status"] == "complete" and config["benchmark"] == "flips"
    assert config["label_view"] == "class-incremental" and record["stream"]["outputs"] == 20
    assert record["stream"]["flips"] == [[], [3]]
    assert min(record["diagonal"]) > 0.5
    assert config["plugin"] == {
        "path": ",".join(str(p.resolve()) for p in paths),
        "sha256": ",".join(hashlib.sha256(p.read_bytes()).hexdigest() for p in paths)}

    report = clbench("report", "--results", results, "--out", tmp_path / "report", env=env)
    assert report.returncode == 0, report.stderr
    page = (tmp_path / "report" / "README.md").read_text()
    assert "| l2 " in page and "| my-finetune " in page

    elsewhere = clbench("run", "--method", "l2", *SMALL, env=environment(tmp_path / "none"))
    assert "unknown method 'l2'" in one_line_error(elsewhere)  # it comes from the package


PLAN = """\
import sys
from clbench import registry
from clbench.errors import ClbenchError
from clbench.plan import make_plan
given = dict(benchmark="flips", dataset="synthetic", tasks=2, threads=1)

def outcome(name, options):
    try:
        make_plan(name, {**given, **options}, [], plugins=sys.argv[2:])
        return "ok"
    except ClbenchError as exc:
        return str(exc)

if sys.argv[1] == "builtins":  # flips has permuted's properties: it must meet the same methods
    registry.load_plugin_file(sys.argv[2])
    for name, cls in registry.methods().items():
        if getattr(cls, "source", None) != "built-in":
            continue
        for scenario in sorted(cls.scenarios):
            flips = outcome(name, {"scenario": scenario})
            same = flips == outcome(name, {"scenario": scenario, "benchmark": "permuted"})
            print(name, scenario, "ok" if flips == "ok" else "refused", same)
else:
    plan = make_plan(sys.argv[1], given, [], plugins=sys.argv[2:])
    print(plan.config.run_id, plan.config.plugin["sha256"])
print("torch" in sys.modules)
"""


def plan(*args: object) -> list[str]:
    out = subprocess.run([sys.executable, "-c", PLAN, *map(str, args)], capture_output=True,
                         text=True, timeout=60, cwd=NEUTRAL)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1] == "False"  # planning imports no torch
    return out.stdout.splitlines()[:-1]


def test_plugin_benchmark_meets_every_builtin_method(files):
    checked = plan("builtins", files["flips.py"])
    assert {"supsup gnu ok True", "supsup nns ok True", "avalanche:naive gnu ok True"} <= set(
        checked)
    assert all(line.endswith("True") for line in checked), checked


def test_an_edited_plugin_is_a_new_run(files, tmp_path):
    copy = tmp_path / "finetune.py"
    copy.write_text(files["finetune.py"].read_text())
    (before,) = plan("my-finetune", copy, files["flips.py"])
    copy.write_text(copy.read_text() + "# edited\n")
    (after,) = plan("my-finetune", copy, files["flips.py"])
    assert before.split()[0] != after.split()[0] and before.split()[1] != after.split()[1]


@pytest.mark.parametrize("args, words", [
    (["--method", "my-finetune", "--scenario", "nns"], ["does not run in scenario nns"]),
    (["--method", "my-finetune", "--benchmark", "flips", "--tasks", "5"],
     ["--tasks 5: flips has at most 4 tasks"]),
    (["--method", "needy", "--benchmark", "flips"], ["at most 2 classes per task", "has 10"]),
])
def test_refusals_use_declared_properties(files, tmp_path, args, words):
    plugins = [arg for name in ("finetune.py", "flips.py", "needy.py")
               for arg in ("--plugin", files[name])]
    line = one_line_error(clbench("run", *plugins, *SMALL, *args,  # the last value wins
                                  env=environment(tmp_path / "results")))
    for word in words:
        assert word in line
    assert not (tmp_path / "results").exists()


def test_broken_plugins_stop_nothing_else(files, tmp_path):
    env = environment(tmp_path / "results")
    broken = [arg for name in ("broken.py", "exits.py", "supsup.py", "clash.py")
              for arg in ("--plugin", files[name])]
    source = f"plugin {files['broken.py'].resolve()}"
    listing = clbench("list", *broken, env=env)
    assert listing.returncode == 0, listing.stderr
    assert listed(listing.stdout, "broken").endswith(
        f"BROKEN ({source}): RuntimeError: broken on purpose: second line")
    assert listed(listing.stdout, "exits").endswith("SystemExit: 3")
    assert "ModuleNotFoundError" in listed(listing.stdout, "supsup:broken")
    assert "two methods are named 'supsup'" in listed(listing.stdout, "clash")
    assert "[gg,gns,gnu,nns]" in listed(listing.stdout, "supsup")  # the built-in is intact
    assert "permuted" in listing.stdout and "mnist-5k" in listing.stdout

    line = one_line_error(clbench("run", *broken, "--method", "broken", *SMALL, env=env))
    assert line == (f"error: method 'broken' ({source}) failed to load: "
                    "RuntimeError: broken on purpose: second line")
    line = one_line_error(clbench("run", *broken, "--method", "avalanche:naive", "--benchmark",
                                  "flips", *SMALL, env=env))
    assert "unknown benchmark 'flips'" in line and "broken.py failed to load" in line
    assert not (tmp_path / "results").exists()
    other = clbench("list", "datasets", *broken, env=env)
    assert other.returncode == 0 and "synthetic" in other.stdout
    # A run with a broken file among its plugins: test_package_and_file_plugins_...


def test_listing_imports_no_torch(installed, files, tmp_path):
    probe = ("import sys\nfrom clbench import listing, registry\n"
             "for path in sys.argv[1:]:\n    registry.load_plugin_file(path)\n"
             "text = listing.render(['methods', 'benchmarks'], True)\n"
             "print('l2' in text, 'my-finetune' in text, 'flips' in text, 'torch' in sys.modules,"
             " 'avalanche' in sys.modules)")
    paths = [files[n] for n in ("finetune.py", "flips.py", "broken.py")]
    out = subprocess.run([sys.executable, "-c", probe, *map(str, paths)], capture_output=True,
                         text=True, timeout=60, cwd=NEUTRAL,
                         env=environment(tmp_path, installed))
    assert out.stdout.split() == ["True", "True", "True", "False", "False"], out.stderr

"""The command line: listing, a real run, skipping, and one-line refusals of bad input."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import time

import pytest

RUN = ["run", "--method", "avalanche:naive", "--scenario", "gg", "--benchmark", "permuted",
       "--dataset", "synthetic", "--tasks", "2", "--iters", "5", "--threads", "1"]


# Subprocesses start outside the checkout, so they import the installed clbench (plain or
# editable), never the source folder by accident.
NEUTRAL = tempfile.gettempdir()


def clbench(*args):
    return subprocess.run([sys.executable, "-m", "clbench", *args], capture_output=True,
                          text=True, timeout=300, cwd=NEUTRAL)


def test_help_is_fast_and_imports_no_torch():
    start = time.perf_counter()
    out = clbench("--help")
    assert out.returncode == 0 and "Examples" in out.stdout
    assert "--install-completion" in out.stdout  # shell completion is on
    assert time.perf_counter() - start < 5
    probe = subprocess.run(
        [sys.executable, "-c", "import sys; from clbench.cli import app; from clbench import "
         "listing; listing.render(['methods', 'benchmarks'], True); "
         "print('torch' in sys.modules, 'avalanche' in sys.modules)"],
        capture_output=True, text=True, timeout=60, cwd=NEUTRAL)
    assert probe.stdout.split() == ["False", "False"], probe.stderr


def test_list_shows_the_vocabulary():
    out = clbench("list").stdout
    for word in ("gg", "gns", "gnu", "nns", "permuted", "rotated", "split", "mnist",
                 "fashion-mnist", "cifar10-jpg", "cifar100", "imagenet", "mnist-5k", "synthetic",
                 "lenet", "fc1024", "gemresnet18", "resnet50", "bnnet", "avalanche:naive"):
        assert word in out


def test_run_writes_a_complete_record_then_skips(results):
    first = clbench(*RUN)
    assert first.returncode == 0, first.stderr
    assert re.search(r"^done: accuracy \d+\.\d\d%, oracle \d+\.\d\d%$", first.stdout, re.M)
    (path,) = results.glob("*/record.json")
    record = json.loads(path.read_text())
    assert record["status"] == "complete" and record["config"]["tasks"] == 2
    assert len(record["diagonal"]) == 2 and [c["after_tasks"] for c in record["checkpoints"]] == [
        1, 2]
    second = clbench(*RUN, "--tag", "exp1")
    assert second.returncode == 0 and "skipped" in second.stdout and str(path) in second.stdout
    assert json.loads(path.read_text())["config"]["tags"] == ["exp1"]


@pytest.mark.parametrize("args, words", [
    (["--method", "nope"], ["unknown method", "choose one of"]),
    (["--scenario", "xx"], ["unknown scenario"]),
    (["--benchmark", "xx"], ["unknown benchmark"]),
    (["--dataset", "xx"], ["unknown dataset"]),
    (["--tasks", "0"], ["--tasks 0"]),
    (["--param", "bogus=1"], ["no param bogus"]),
    (["--method", "avalanche:naiv"], ["unknown method 'avalanche:naiv': did you mean "
                                      "'avalanche:naive'?"]),
    (["--scenario", "g"], ["unknown scenario 'g': did you mean 'gg'?"]),
    (["--benchmark", "rotatd"], ["unknown benchmark 'rotatd': did you mean 'rotated'?"]),
    (["--dataset", "mnist5k"], ["unknown dataset 'mnist5k': did you mean 'mnist-5k'?"]),
    (["--model", "lenett"], ["unknown model 'lenett': did you mean 'lenet'?"]),
    (["--param", "optimiser=adam"], ["has no param optimiser: did you mean 'optimizer'?"]),
    (["--log", "tensorbord"], ["unknown logger 'tensorbord': did you mean 'tensorboard'?"]),
    (["--log", "csv", "--log-every", "0"], ["--log-every 0: must be at least 1"]),
    (["--param", "lr=fast"], ["expected float"]),
    (["--density", "0.5"], ["no density"]),
    (["--dataset", "mnist", "--data-root", "{empty}"], ["--data-root", "--download", "mnist-5k"]),
])
def test_bad_input_is_one_line_and_writes_nothing(results, tmp_path, args, words):
    empty = tmp_path / "empty"
    empty.mkdir()
    args = [a.replace("{empty}", str(empty)) for a in args]
    base = [a for a in RUN]
    out = clbench(*(base + args))
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), out.stderr
    assert "Traceback" not in out.stderr
    for word in words:
        assert word in lines[0]
    assert not results.exists() or not list(results.glob("*/record.json"))
    assert list(empty.iterdir()) == []


def test_results_path_that_is_a_file(tmp_path):
    file = tmp_path / "file"
    file.write_text("x")
    out = clbench(*RUN, "--results", str(file))
    assert out.returncode != 0 and "is a file" in out.stderr and "Traceback" not in out.stderr
    assert file.read_text() == "x"


def test_run_and_sweep_take_the_options_table_in_its_order_with_its_help():
    import typer

    from clbench.cli import app
    from clbench.options import SETTINGS, for_command

    commands = typer.main.get_command(app).commands
    for name in ("run", "sweep"):
        params = {p.name: p for p in commands[name].params}
        assert list(params) == [o.name for o in for_command(name)]
        for o in for_command(name):
            assert params[o.name].help == o.help
            assert params[o.name].default is None or not o.setting  # unset settings are None
    assert set(SETTINGS) <= {o.name for o in for_command("sweep")}


SWALLOWED = """
import gc, os, signal, sys, time
from clbench.errors import keep_interrupts
from {module} import _terminate

signal.signal(signal.SIGTERM, _terminate)
keep_interrupts()


def callback(phase, info, calls=[]):  # SIGTERM lands in a collector's callback, twice
    calls.append(phase)
    if len(calls) == 1:
        os.kill(os.getpid(), signal.SIGTERM)  # its handler runs here, inside the callback
    if len(calls) <= 2:
        time.sleep(0.5)  # and the signal sent again in 10 ms lands here, in the next call


gc.callbacks.append(callback)
try:
    for _ in range(100):  # 10 s
        gc.collect()
        time.sleep(0.1)
except KeyboardInterrupt as exc:  # the driver's interrupt, as cli.main ends it
    sys.exit(128 + exc.signum)
print("ran on")
"""


@pytest.mark.parametrize("module", ["clbench.cli", "clbench.executors"])
def test_sigterm_inside_a_garbage_collector_callback_still_ends_the_process(module):
    """jax (which Avalanche imported through qpsolvers before clbench hid it, and a plugin may
    still import) runs a Python callback on every garbage collection; Python drops an
    exception raised there with an "Exception ignored" traceback, so a SIGTERM landing in it
    was lost (a sweep's worker ran on until killed). Sent again, it can land in a callback
    again (the next one here), and must be sent once more."""
    out = subprocess.run([sys.executable, "-c", SWALLOWED.format(module=module)],
                         capture_output=True, text=True, timeout=60, cwd=NEUTRAL)
    assert out.returncode == 143 and "ran on" not in out.stdout, out.stderr
    assert "Exception ignored" not in out.stderr

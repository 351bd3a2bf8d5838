"""Files people share: records honour the umask, and one process trains a config on a results
folder at a time (a lock left by a killed process does not block, and the next run resumes)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

from clbench.atomic import write_json_atomic
from clbench.lock import RunLock
from clbench.store import Store
from clbench.sweep import SweepSpec, plan_sweep, run_sweep

NEUTRAL = tempfile.gettempdir()
RUN = ["run", "--method", "supsup", "--scenario", "gnu", "--dataset", "mnist-5k",
       "--threads", "1", "--param", "output_size=20", "--no-progress"]


def clbench(*args, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "clbench", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=NEUTRAL, **kwargs)


def finish(proc, timeout=600):
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def test_new_records_are_0644_under_umask_022(tmp_path):
    old = os.umask(0o022)
    try:
        write_json_atomic(tmp_path / "run" / "record.json", {"a": 1})
    finally:
        os.umask(old)
    assert oct((tmp_path / "run" / "record.json").stat().st_mode & 0o777) == "0o644"
    old = os.umask(0o077)
    try:
        write_json_atomic(tmp_path / "private.json", {"a": 1})
    finally:
        os.umask(old)
    assert oct((tmp_path / "private.json").stat().st_mode & 0o777) == "0o600"


def test_a_real_record_is_0644_under_umask_022(results):
    proc = clbench(*RUN, "--tasks", "2", "--iters", "5", preexec_fn=lambda: os.umask(0o022))
    code, out, err = finish(proc)
    assert code == 0, err
    (record,) = results.glob("*/record.json")
    assert record.stat().st_mode & 0o777 == 0o644


def test_a_run_held_by_a_live_process_is_not_trained_again(results):
    first = clbench(*RUN, "--tasks", "2", "--iters", "5")
    assert finish(first)[0] == 0
    (folder,) = [p.parent for p in results.glob("*/record.json")]
    (folder / "record.json").unlink()
    with RunLock(folder / "run.lock") as lock:
        assert lock.acquire() is None
        code, out, err = finish(clbench(*RUN, "--tasks", "2", "--iters", "5"))
    assert code == 0, err
    assert (f"not run here: running in process {os.getpid()} on host {socket.gethostname()} "
            "since ") in out
    assert not (folder / "record.json").exists()


def test_two_identical_runs_started_together_train_once(results):
    args = (*RUN, "--tasks", "3", "--iters", "100")
    a, b = clbench(*args), clbench(*args)
    outs = [finish(a), finish(b)]
    assert all(code == 0 for code, _, _ in outs), [err for _, _, err in outs]
    trained = [out for _, out, _ in outs if "record: " in out]
    others = [out for _, out, _ in outs if "record: " not in out]
    assert len(trained) == 1 and len(others) == 1, outs
    # Usually the second one finds the first training; on a very slow start it may find the
    # finished record instead: either way it trains nothing.
    assert "not run here: running in process" in others[0] or "skipped" in others[0]
    assert len(list(results.glob("*/record.json"))) == 1


def test_after_kill_9_the_next_run_resumes_from_the_checkpoint(results):
    args = (*RUN, "--tasks", "4", "--iters", "60")
    owner = clbench(*args)
    deadline = time.monotonic() + 300
    while not list(results.glob("*/checkpoint.pt")):
        assert owner.poll() is None and time.monotonic() < deadline, finish(owner)
        time.sleep(0.05)
    os.kill(owner.pid, signal.SIGKILL)
    owner.communicate()
    assert list(results.glob("*/run.lock")), "the dead owner's lock file is left behind"
    code, out, err = finish(clbench(*args))
    assert code == 0, err
    assert "resuming after task" in out and "record: " in out
    assert not list(results.glob("*/checkpoint.pt"))
    assert not list(results.glob("*/run.lock")), "the next holder removes the file when done"


def test_a_sweep_counts_a_run_held_elsewhere_as_running(results):
    spec = SweepSpec(["supsup"], {"dataset": "mnist-5k", "tasks": 2, "iters": 5, "threads": 1,
                                  "scenario": "gnu"}, ["output_size=20"], {"seed": [0, 1]})
    held = plan_sweep(spec, Store(results))[0]
    with Store(results).lock(held.config) as lock:
        assert lock.acquire() is None
        sweep = run_sweep(spec, str(results), executor="local", workers=1, address=None,
                          dry_run=False)
        lines = []
        while True:
            try:
                lines.append(next(sweep).text)
            except StopIteration as end:
                code = end.value
                break
    assert code == 0, lines
    assert any(f"running {held.label}: running in process {os.getpid()}" in line
               for line in lines), lines
    assert "1 of 2 runs are running in other processes" in "\n".join(lines)
    assert Store(results).complete(held.run_id) is None
    assert len(list(results.glob("*/record.json"))) == 1

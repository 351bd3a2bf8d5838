"""Ray clusters (issue #20): a bad address fails fast with one line, a token-guarded cluster says
so, a sweep over two nodes on loopback survives losing the second node with the numbers of a
local run and without a word from Ray, and no ending leaves anything beside records and
checkpoints. Ctrl-C and SIGTERM say what they leave."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

NEUTRAL = tempfile.gettempdir()
SMALL = ["--dataset", "mnist-5k", "--threads", "1"]


def clbench(*args, env=None, timeout=300, wait=True):
    command = [sys.executable, "-m", "clbench", *args]
    kw = {"cwd": NEUTRAL, "env": {**os.environ, **(env or {})}, "text": True}
    if not wait:  # as a command typed at a terminal: Ctrl-C not ignored, even when these
        # tests run in a background job (whose shell ignores SIGINT, which Python respects)
        return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True, preexec_fn=default_sigint, **kw)
    return subprocess.run(command, capture_output=True, timeout=timeout, **kw)


def default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def leftovers(root: Path) -> list[str]:
    """Whatever a results folder holds besides run folders of records and checkpoints."""
    if not root.exists():
        return []
    extra = [p.name for p in root.iterdir() if not p.is_dir()]
    extra += [f"{d.name}/{f.name}" for d in root.iterdir() if d.is_dir() for f in d.iterdir()
              if f.name not in ("record.json", "checkpoint.pt")]
    return extra


def records(root: Path) -> dict[str, dict]:
    return {r["run_id"]: r for r in (json.loads(p.read_text())
                                     for p in sorted(root.glob("*/record.json")))}


# --------------------------------------------------------------------------- no cluster needed


def test_a_bad_address_fails_fast_with_one_line(tmp_path):
    pytest.importorskip("ray")
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.2", 0))
        port = probe.getsockname()[1]
    results = tmp_path / "results"
    start = time.perf_counter()
    out = clbench("sweep", "--method", "psp", *SMALL, "--tasks", "2", "--iters", "5",
                  "--executor", "ray", "--address", f"127.0.0.2:{port}",
                  "--connect-timeout", "5", "--results", str(results),
                  env={"XDG_CACHE_HOME": str(tmp_path / "cache")}, timeout=120)
    took = time.perf_counter() - start
    assert out.returncode == 2, out.stderr
    assert out.stderr.count("\n") == 1 and out.stderr.startswith("error: no Ray cluster at "), \
        out.stderr
    assert "nothing answers there" in out.stderr and "Traceback" not in out.stderr
    assert took < 35, took
    assert not results.exists()  # nothing was made for runs that never started


def test_what_ray_prints_while_shutting_down_goes_to_the_log_not_the_terminal(tmp_path, capfd):
    from clbench.cluster import quiet, shutdown

    class Ray:  # ray.shutdown() flushes the lines it held back to deduplicate, on this thread
        def shutdown(self):
            print("(raylet) A worker died or was killed while executing a task", flush=True)
            print("(raylet) the dump", file=sys.stderr, flush=True)

    log = tmp_path / "ray.log"
    with quiet(log):
        print("clbench's own line")
        shutdown(Ray())
        print("and after it")
    out, err = capfd.readouterr()
    assert out == "clbench's own line\nand after it\n" and err == ""
    assert "A worker died" in log.read_text() and "the dump" in log.read_text()


def test_stale_markers_of_dead_drivers_are_removed_and_live_ones_kept(tmp_path):
    from clbench.cluster import MARKER, Marker, remove_stale_markers

    holder = subprocess.Popen(  # a driver that holds its marker, then dies by kill -9
        [sys.executable, "-c", "import sys, time; from pathlib import Path; "
         "from clbench.cluster import Marker; m = Marker(Path(sys.argv[1])).__enter__(); "
         "print(m.path, flush=True); time.sleep(600)", str(tmp_path)],
        stdout=subprocess.PIPE, text=True, cwd=NEUTRAL)
    dead = Path(holder.stdout.readline().strip())
    fresh = tmp_path / MARKER.format("f" * 32)  # unlocked, but made a moment ago
    fresh.touch()
    with Marker(tmp_path) as live:
        assert remove_stale_markers(tmp_path) == []  # the holder lives: its marker stays
        holder.kill()
        holder.wait()
        old = time.time() - 60
        os.utime(dead, (old, old))
        assert remove_stale_markers(tmp_path) == [dead]
        assert live.path.is_file() and fresh.is_file()
    assert not live.path.exists()


@pytest.mark.parametrize("command, how", [("run", signal.SIGINT), ("sweep", signal.SIGTERM)])
def test_interrupts_say_what_is_complete_and_exit_128_plus_the_signal(tmp_path, command, how):
    results = tmp_path / "results"
    what = (["--seed", "0"] if command == "run" else ["--grid", "seed=0,1", "--workers", "2"])
    proc = clbench(command, "--method", "supsup", "--param", "mask=topk", "--density", "0.1",
                   *what, *SMALL, "--tasks", "12", "--iters", "40", "--results", str(results),
                   wait=False)  # 12 tasks: seconds between the first checkpoint and the end
    deadline = time.time() + 240
    while time.time() < deadline and not list(results.glob("*/checkpoint.pt")):
        time.sleep(0.05)
    if how == signal.SIGINT:
        os.killpg(proc.pid, how)  # Ctrl-C reaches the terminal's whole process group
    else:
        os.kill(proc.pid, how)  # SIGTERM to the driver alone
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + how, err
    line = err.strip().splitlines()[-1]
    assert line.startswith("interrupted: ") and line.endswith(
        " not; the same command resumes them"), err
    assert "Traceback" not in err
    assert int(line.split()[1]) == len(list(results.glob("*/record.json")))
    assert leftovers(results) == []
    assert list(results.glob("*/checkpoint.pt"))  # what the same command resumes from


# --------------------------------------------------------------------------- two nodes


def free_port(host: str = "127.0.0.2") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every process (Linux)."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        found[int(entry)] = (int(stat.rsplit(")", 1)[1].split()[1]), cmd)
    return found


def tree(root: int) -> dict[int, str]:
    """A process and all its descendants (Ray's workers leave its process group)."""
    table = processes()
    family, todo = {}, [root]
    while todo:
        pid = todo.pop()
        if pid in table and pid not in family:
            family[pid] = table[pid][1]
            todo += [p for p, (parent, _) in table.items() if parent == pid]
    return family


def kill_tree(root: int) -> None:
    for pid in tree(root):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class TwoNodes:
    """A head on 127.0.0.2 and a second node on 127.0.0.3, each with 1 CPU and token
    authentication, started by ``ray start --block`` in the test's own temp dir and ports.

    Ray rewrites 127.0.0.1 and localhost to the machine's address, but leaves other loopback
    addresses alone: so the nodes use 127.0.0.2 and 127.0.0.3, and the whole cluster stays on
    loopback."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="cb-ray-"))  # short: Ray's socket paths
        self.token = os.urandom(16).hex()
        self.address = f"127.0.0.2:{free_port()}"
        self.env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token,
                    "RAY_USAGE_STATS_ENABLED": "0", "OMP_NUM_THREADS": "1",
                    # the head notices a dead node within a second or two, not 15 s
                    "RAY_health_check_period_ms": "300", "RAY_health_check_timeout_ms": "300",
                    "RAY_health_check_failure_threshold": "3"}
        ray = [sys.executable, "-m", "ray.scripts.scripts", "start", "--block", "--num-cpus",
               "1", "--disable-usage-stats"]
        head = [*ray, "--head", "--node-ip-address", "127.0.0.2",
                "--port", self.address.split(":")[1], "--temp-dir", str(self.dir),
                "--include-dashboard", "false", "--dashboard-port", str(free_port()),
                "--ray-client-server-port", str(free_port())]
        second = [*ray, "--address", self.address, "--node-ip-address", "127.0.0.3"]
        self.procs = []
        for name, command in (("head", head), ("second", second)):
            ports = ["--dashboard-agent-listen-port", str(free_port()),
                     "--dashboard-agent-grpc-port", str(free_port()),
                     "--runtime-env-agent-port", str(free_port()),
                     "--metrics-export-port", str(free_port())]
            with open(self.dir / f"{name}.log", "w") as log:
                self.procs.append(subprocess.Popen(
                    [*command, *ports], stdout=log, stderr=subprocess.STDOUT, env=self.env,
                    cwd=NEUTRAL, start_new_session=True))

    def wait(self, timeout: float = 60) -> None:
        """Until both nodes run; skip (saying why) when Ray cannot start here."""
        deadline = time.time() + timeout
        logs = [self.dir / "head.log", self.dir / "second.log"]
        while time.time() < deadline:
            if all("Ray runtime started" in log.read_text() for log in logs):
                return
            if any(p.poll() is not None for p in self.procs):
                break
            time.sleep(0.2)
        tail = " | ".join(log.read_text().strip().splitlines()[-1:][0] if log.read_text().strip()
                          else "" for log in logs)
        pytest.skip(f"Ray cannot start a two-node cluster on loopback here: {tail}")

    def kill_second(self) -> dict[int, str]:
        """kill -9 the second node's raylet, agents and workers; what was killed."""
        killed = tree(self.procs[1].pid)
        kill_tree(self.procs[1].pid)
        return killed

    def second_runs_a_task(self) -> bool:
        return any("ray::_ray_worker" in cmd for cmd in tree(self.procs[1].pid).values())

    def stop(self) -> None:
        for proc in self.procs:
            kill_tree(proc.pid)
            proc.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def two_nodes():
    pytest.importorskip("ray")
    if not Path("/proc/self/stat").is_file():
        pytest.skip("the two-node test finds Ray's processes in /proc (Linux)")
    cluster = TwoNodes()
    try:
        yield cluster
    finally:
        cluster.stop()


def test_two_nodes_survive_losing_one_with_the_numbers_of_a_local_run(two_nodes, tmp_path):
    from clbench.runner import execute_spec
    from clbench.store import Store
    from clbench.sweep import SweepSpec, plan_sweep

    grid = ["--method", "supsup", "--param", "mask=topk", "--density", "0.1",
            "--grid", "seed=0,1", *SMALL, "--tasks", "8", "--iters", "20"]
    spec = SweepSpec(["supsup"], {"dataset": "mnist-5k", "threads": 1, "tasks": 8, "iters": 20,
                                  "density": 0.1}, ["mask=topk"], {"seed": [0, 1]})
    local = {}  # the numbers of a local run, computed while the nodes start
    for planned in plan_sweep(spec, Store(tmp_path / "unused")):
        record, _ = execute_spec(planned.spec, None, resumable=False)
        local[record["run_id"]] = record
    two_nodes.wait()

    results, cache = tmp_path / "results", tmp_path / "cache"
    env = {"XDG_CACHE_HOME": str(cache), "RAY_AUTH_MODE": "disabled"}
    refused = clbench("sweep", *grid, "--executor", "ray", "--address", two_nodes.address,
                      "--results", str(results), env=env, timeout=120)
    assert refused.returncode == 2 and "wants an authentication token" in refused.stderr
    assert "RAY_AUTH_TOKEN" in refused.stderr and refused.stderr.count("\n") == 1
    assert not results.exists()

    env = {**env, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": two_nodes.token}
    sweep = clbench("sweep", *grid, "--executor", "ray", "--address", two_nodes.address,
                    "--results", str(results), env=env, wait=False)
    killed: dict[int, str] = {}
    deadline = time.time() + 120
    while time.time() < deadline and sweep.poll() is None:
        folders = [d for d in results.iterdir() if d.is_dir()] if results.is_dir() else []
        saved = all((f / "checkpoint.pt").exists() or (f / "record.json").exists()
                    for f in folders)
        if len(folders) == 2 and saved and two_nodes.second_runs_a_task():
            killed = two_nodes.kill_second()  # mid-run, after its first checkpoint
            break
        time.sleep(0.05)
    out, err = sweep.communicate(timeout=120)
    assert killed, f"the second node never ran a task past its first checkpoint:\n{out}\n{err}"
    assert any("raylet" in cmd for cmd in killed.values())
    assert sweep.returncode == 0, err
    assert err == "" and "\x1b[" not in out and "(raylet)" not in out, out + err
    assert "(2 nodes, 2 CPUs)" in out
    assert "node lost, retried, resuming after task " in out, out
    log = Path(out.split("Ray's log lines go to ", 1)[1].split()[0])
    assert log.parent == cache / "clbench" / "logs"
    assert "(raylet)" in log.read_text()  # Ray's own account of the lost node is kept there

    theirs = records(results)
    assert theirs.keys() == local.keys()
    for run_id, record in local.items():
        assert theirs[run_id]["status"] == "complete"
        assert theirs[run_id]["checkpoints"] == record["checkpoints"]
        assert theirs[run_id]["diagonal"] == record["diagonal"]
    assert any(r.get("resumes") for r in theirs.values())
    assert leftovers(results) == []

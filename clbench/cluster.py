"""Ray: join a cluster (or start a local one) fast and quietly, and run a sweep's runs on it.

* :func:`check_address` answers within ``--connect-timeout`` whether a Ray cluster answers at an
  address, and otherwise names the cause in one line: nothing answers there, the cluster wants an
  authentication token (and how to pass one), the versions differ, or no node of the cluster
  runs on this machine (a driver must run on one).
* :func:`quiet` sends Ray's own output to a log file: its C++ logs (file descriptor 2), its
  Python loggers and the lines its background threads print ("(raylet) Task failed…"). Lines
  of the main thread, where the command line prints clbench's lines, still reach the terminal,
  except what :func:`shutdown` prints (Ray flushes the lines it held back there).
* :class:`Marker` is the driver's marker in the results folder (a Ray worker that sees it shares
  the driver's filesystem and may checkpoint there). The driver holds a lock on it while it
  lives and removes it at any ending it survives; a dead driver's marker is removed by the next
  sweep.
* :class:`Session` submits each run as a Ray task and yields its result; a run Ray retried after
  losing its node (or worker) comes back with a note saying so and where it resumed.
"""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from clbench.errors import ClbenchError
from clbench.executors import Result, RunNote
from clbench.runner import RunSpec, execute_spec

MARKER = ".clbench-driver-{}"
STALE_AFTER_S = 2.0  # an unlocked marker this old belongs to a dead driver (a new one is
# locked microseconds after it is made)
KEEP_LOGS = 20


# --------------------------------------------------------------------------- Ray's output


def log_path() -> Path:
    """A new log file for Ray's lines of one sweep, under ``<XDG cache>/clbench/logs`` (the
    newest :data:`KEEP_LOGS` are kept)."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    folder = (Path(xdg) if xdg else Path.home() / ".cache") / "clbench" / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    for old in sorted(folder.glob("ray-*.log"))[:-KEEP_LOGS + 1]:
        old.unlink(missing_ok=True)
    return folder / f"ray-{datetime.now():%Y%m%d-%H%M%S}-{os.getpid()}.log"


class _ByThread(io.TextIOBase):
    """A text stream that passes the main thread's writes to ``main`` and other threads' to
    ``other`` (Ray prints from its own threads; clbench prints from the main one)."""

    def __init__(self, main: TextIO, other: TextIO) -> None:
        super().__init__()
        self.main, self.other = main, other

    def _target(self) -> TextIO:
        return self.main if threading.current_thread() is threading.main_thread() else self.other

    def write(self, text: str) -> int:
        return self._target().write(text)

    def flush(self) -> None:
        for stream in (self.main, self.other):
            if not stream.closed:
                stream.flush()

    def isatty(self) -> bool:
        return self.main.isatty()

    def fileno(self) -> int:
        return self.main.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.main, "encoding", "utf-8")

    @property
    def errors(self) -> str | None:  # type: ignore[override]
        return getattr(self.main, "errors", None)


@contextmanager
def quiet(log: Path | None) -> Iterator[None]:
    """Within the block, send Ray's output to ``log`` (nothing changes when ``log`` is None):
    file descriptor 2 (where Ray's C++ code and the processes it starts write) points at the
    file, and ``sys.stdout``/``sys.stderr`` pass only the main thread's lines to the terminal.
    Ray's threads may outlive ``ray.shutdown()`` (one prints a lost node's dump late), so
    after the block other threads' lines still go to the file, for the rest of the process."""
    if log is None:
        yield
        return
    file = open(log, "a", buffering=1, encoding="utf-8", errors="replace")  # noqa: SIM115
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    terminal = os.fdopen(os.dup(2), "w", buffering=1,
                         encoding=getattr(sys.stderr, "encoding", None) or "utf-8",
                         errors="backslashreplace")
    out, err, last_resort = sys.stdout, sys.stderr, logging.lastResort
    os.dup2(file.fileno(), 2)
    sys.stdout, sys.stderr = _ByThread(out, file), _ByThread(terminal, file)
    logging.lastResort = logging.StreamHandler(file)
    try:
        yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        os.dup2(terminal.fileno(), 2)
        terminal.close()
        sys.stdout, sys.stderr = _ByThread(out, file), _ByThread(err, file)
        logging.lastResort = last_resort


def shutdown(ray: Any) -> None:
    """``ray.shutdown()`` with its main-thread lines sent where Ray's other lines go: it prints
    the lines Ray held back to deduplicate (a lost node's dump, say) from the main thread."""
    streams = [s for s in (sys.stdout, sys.stderr) if isinstance(s, _ByThread)]
    mains = [s.main for s in streams]
    for stream in streams:
        stream.main = stream.other
    try:
        ray.shutdown()
    finally:
        for stream, main in zip(streams, mains, strict=True):
            stream.main = main


# --------------------------------------------------------------------------- the connect check


def _auth_mode_is_token() -> bool:
    try:
        from ray._raylet import AuthenticationMode, get_authentication_mode
    except ImportError:
        return os.environ.get("RAY_AUTH_MODE", "").lower() == "token"
    return get_authentication_mode() == AuthenticationMode.TOKEN


def _ask_cluster(address: str) -> dict[str, Any]:
    """Ask the cluster's GCS for its versions and live nodes: ``{"kind": "ok", "metadata",
    "alive"}``, ``{"kind": "auth", "token"}`` (whether a token was sent) or ``{"kind":
    "error", "message"}``."""
    from ray._private import ray_constants
    from ray._raylet import GcsClient
    from ray.core.generated.gcs_pb2 import GcsNodeInfo
    from ray.exceptions import AuthenticationError

    try:
        client = GcsClient(address=address)
        raw = client.internal_kv_get(b"CLUSTER_METADATA",
                                     namespace=ray_constants.KV_NAMESPACE_CLUSTER, timeout=10)
        nodes = client.get_all_node_info(timeout=10,
                                         state_filter=GcsNodeInfo.GcsNodeState.ALIVE)
    except Exception as exc:  # noqa: BLE001 - reported as the cause
        text = " ".join(str(exc).split())
        if isinstance(exc, AuthenticationError) or "InvalidAuthToken" in text:
            return {"kind": "auth", "token": _auth_mode_is_token()}
        return {"kind": "error", "message": text[:300]}
    return {"kind": "ok", "metadata": json.loads(raw) if raw else {},
            "alive": sorted(node_id.hex() for node_id in nodes)}


def _ask_main() -> None:
    """``python -m clbench.cluster ADDRESS``: :func:`_ask_cluster`'s answer as JSON (run in a
    child process, so a cluster that never answers can be left behind within the timeout)."""
    print(json.dumps(_ask_cluster(sys.argv[1])), flush=True)


def check_address(address: str | None, timeout: float) -> str | None:
    """The cluster address Ray will join for ``address`` (``--address``, else ``$RAY_ADDRESS``;
    None: a local cluster is started), checked within ``timeout`` seconds; a
    :class:`ClbenchError` naming the cause when Ray could not join it."""
    from ray._private import services

    try:
        target = services.canonicalize_bootstrap_address(address)
    except Exception as exc:  # noqa: BLE001 - e.g. "Invalid address format"
        raise ClbenchError(f"--address {address}: {' '.join(str(exc).split())}") from None
    if target is None:
        return None
    deadline = time.monotonic() + timeout
    shown = target if address in (None, target) else f"{address} (Ray resolves it to {target})"
    host, _, port = target.rpartition(":")
    host = host.strip("[]")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except TimeoutError:
        raise ClbenchError(f"no Ray cluster at {shown}: nothing answered within {timeout:g} s "
                           "(--connect-timeout)") from None
    except socket.gaierror as exc:
        raise ClbenchError(f"no Ray cluster at {shown}: cannot resolve {host} "
                           f"({exc.strerror})") from None
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ClbenchError(f"no Ray cluster at {shown}: nothing answers there ({reason}); start "
                           "a head there with `ray start --head --port PORT`") from None
    command = [sys.executable, "-m", "clbench.cluster", target]
    try:  # Ray's own lines (on fd 2) go where :func:`quiet` sends them
        asked = subprocess.run(command, stdout=subprocess.PIPE, text=True,
                               timeout=max(0.1, deadline - time.monotonic()))
        answer = json.loads(asked.stdout.strip().splitlines()[-1])
    except subprocess.TimeoutExpired:
        raise ClbenchError(f"no Ray cluster at {shown}: something listens there but no Ray "
                           f"cluster replied within {timeout:g} s (--connect-timeout; is it the "
                           "head's GCS port, 6379 unless `ray start --port` said otherwise?)"
                           ) from None
    except (ValueError, IndexError):
        raise ClbenchError(f"could not ask the Ray cluster at {shown} (exit code "
                           f"{asked.returncode}; details in the Ray log)") from None
    if answer["kind"] == "auth" and answer["token"]:
        raise ClbenchError(f"the Ray cluster at {shown} refused this machine's authentication "
                           "token (from RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or "
                           "~/.ray/auth_token): pass the cluster's (`ray get-auth-token` on its "
                           "head prints it)")
    if answer["kind"] == "auth":
        raise ClbenchError(f"the Ray cluster at {shown} wants an authentication token: run with "
                           "RAY_AUTH_MODE=token and RAY_AUTH_TOKEN=<token> (or "
                           "RAY_AUTH_TOKEN_PATH=<file>); `ray get-auth-token` on its head "
                           "prints it")
    if answer["kind"] == "error":
        raise ClbenchError(f"something answers at {shown} but not as a Ray cluster: "
                           f"{answer['message']}")
    metadata, alive = answer["metadata"], set(answer["alive"])
    _check_versions(metadata, shown)
    if not alive & set(services.find_node_ids()):
        raise ClbenchError(f"no node of the Ray cluster at {shown} runs on this machine: join it "
                           f"(`ray start --address {target}`) or run the sweep on one of its "
                           "nodes")
    return target


def _check_versions(metadata: dict[str, Any], shown: str) -> None:
    import ray
    from ray._private.utils import check_version_info

    if not metadata:
        return
    try:
        check_version_info(metadata, "clbench", raise_on_mismatch=True)
    except Exception:  # noqa: BLE001 - Ray's mismatch error; reworded
        here = f"Ray {ray.__version__} on Python {sys.version.split()[0]}"
        there = (f"Ray {metadata.get('ray_version', '?')} on Python "
                 f"{metadata.get('python_version', '?')}")
        raise ClbenchError(f"versions differ: the Ray cluster at {shown} runs {there}, this "
                           f"machine {here}; install the cluster's versions here") from None


# --------------------------------------------------------------------------- the driver's marker


class Marker:
    """``.clbench-driver-<token>`` in the results folder while the driver lives (locked by it),
    so Ray workers can tell they share the driver's filesystem."""

    def __init__(self, root: Path) -> None:
        self.token = uuid.uuid4().hex
        self.path = root / MARKER.format(self.token)
        self.fd: int | None = None

    def __enter__(self) -> Marker:
        import fcntl

        remove_stale_markers(self.path.parent)
        self.fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return self

    def __exit__(self, *exc: object) -> None:
        self.path.unlink(missing_ok=True)
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def remove_stale_markers(root: Path) -> list[Path]:
    """Remove the markers of drivers that died (nobody holds their lock); return them."""
    import fcntl

    removed = []
    for path in root.glob(MARKER.format("*")):
        try:
            fd = os.open(path, os.O_RDWR)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue  # a live driver holds it
        try:
            if time.time() - os.fstat(fd).st_mtime > STALE_AFTER_S:
                path.unlink(missing_ok=True)
                removed.append(path)
        finally:
            os.close(fd)
    return removed


# --------------------------------------------------------------------------- tasks


def _attempt() -> int:
    """Which attempt of its Ray task this is (0 the first; more after Ray retried it)."""
    try:
        import ray

        return int(ray._private.worker.global_worker.core_worker
                   .get_current_task_attempt_number())
    except Exception:  # noqa: BLE001 - unknown: say nothing about retries
        return 0


def _ray_worker(spec: RunSpec, results: str, token: str
                ) -> tuple[dict[str, Any], list[str], int]:
    """A Ray task: checkpoint into the results folder only when it is the driver's; return the
    record, the notes and the attempt number."""
    shared = (Path(results) / MARKER.format(token)).is_file()
    record, notes = execute_spec(spec, results if shared else None, resumable=shared)
    if not shared:
        notes.append("the results folder is not shared with the Ray workers: an interrupted "
                     "run restarts from its first task")
    return record, notes, _attempt()


class Session:
    """A driver joined to a Ray cluster: :meth:`run` submits runs as tasks."""

    def __init__(self, target: str | None, root: Path, token: str) -> None:
        import ray

        self.ray, self.target, self.root, self.token = ray, target, root, token
        self.started = self._alive()

    def _alive(self) -> set[str]:
        return {n["NodeID"] for n in self.ray.nodes() if n.get("Alive")}

    def cpus(self) -> float:
        """The cluster's CPUs."""
        return self.ray.cluster_resources().get("CPU", 0)

    def where(self) -> str:
        """The cluster, for the user: its address (or local), nodes and CPUs."""
        cpus = self.cpus()
        nodes = len(self.started)
        return (f"Ray at {self.target or 'a local cluster'} ({nodes} node{'s' * (nodes != 1)}, "
                f"{cpus:g} CPUs)")

    def run(self, specs: list[RunSpec], resources: list[tuple[int, float]]) -> Iterator[Result]:
        """Run each spec as a task needing (CPUs, GPUs) of ``resources``, spread over the
        nodes; yield each run's :data:`~clbench.executors.Result` as it ends."""
        task = self.ray.remote(_ray_worker)
        refs = {task.options(num_cpus=cpu, num_gpus=gpu, scheduling_strategy="SPREAD").remote(
            spec.with_plugin_texts(), str(self.root), self.token): i
            for i, (spec, (cpu, gpu)) in enumerate(zip(specs, resources, strict=True))}
        while refs:
            ready, _ = self.ray.wait(list(refs), num_returns=1)
            index = refs.pop(ready[0])
            try:
                record, notes, attempt = self.ray.get(ready[0])
            except Exception as exc:  # noqa: BLE001 - a task that crashed: a failed run
                yield index, None, [], " ".join(f"{type(exc).__name__}: {exc}".split())[:2000]
                continue
            if attempt > 0:
                notes = [self._retried(record), *notes]
            yield index, record, notes, ""

    def _retried(self, record: dict[str, Any]) -> RunNote:
        lost = "node" if self.started - self._alive() else "worker"
        resumes = record.get("resumes") or []  # non-empty only when this attempt resumed
        where = (f"resuming after task {resumes[-1]['at_task'] - 1}" if resumes
                 else "restarting from its first task")
        return RunNote(f"{lost} lost, retried, {where}")


@contextmanager
def session(address: str | None, results: str | None, connect_timeout: float,
            log: Path | None) -> Iterator[Session]:
    """Join the cluster at ``address`` (else start a local one) with Ray's output in ``log``;
    leave it, and remove the driver's marker, however the block ends."""
    try:
        import ray
    except ImportError:
        raise ClbenchError("--executor ray needs Ray: pip install 'clbench[ray]'") from None
    from clbench.store import results_root

    if connect_timeout <= 0:
        raise ClbenchError(f"--connect-timeout {connect_timeout:g}: must be above 0 seconds")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    root = results_root(results).resolve()
    with quiet(log):
        target = check_address(address, connect_timeout)
        root.mkdir(parents=True, exist_ok=True)
        term = signal.getsignal(signal.SIGTERM)
        try:
            ray.init(address=target, include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
        except Exception as exc:  # noqa: BLE001 - one line; the details are in the log
            shutdown(ray)
            raise ClbenchError(f"Ray could not start or join its cluster: "
                               f"{' '.join(str(exc).split())[:300]}") from None
        finally:
            if term is not None:  # a local cluster installs its own (exit 1, silently)
                signal.signal(signal.SIGTERM, term)
        try:
            with Marker(root) as marker:
                yield Session(target, root, marker.token)
        finally:
            shutdown(ray)


if __name__ == "__main__":
    _ask_main()

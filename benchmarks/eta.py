"""Is the ETA honest on a run whose evaluation grows with the tasks learned?

Runs ``clbench run`` (SupSup, GNu, permuted ``mnist-5k``, 100 tasks, an evaluation point every
``--every`` tasks, so One-Shot evaluation is a large share of the wall time), reads its plain
progress lines as they come (one every ``--line-every`` seconds, each stamped on arrival), and
compares the ETA printed at 25 % (and 50 %) of the run's wall time, and after 25 tasks, with the
wall time that was really left. A linear extrapolation from tasks done is shown beside it.

    python benchmarks/eta.py --threads 1 --out reports/benchmarks/eta.txt
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LINE = re.compile(r"(training task (\d+)|evaluating after (\d+)|scoring task (\d+))/\d+.*"
                  r"ETA (?:(\d+):)?(\d+):(\d\d)$")


def parse(text: str) -> tuple[int, float] | None:
    """(tasks learned, ETA seconds) of a progress line, or None."""
    match = LINE.search(text.strip())
    if not match:
        return None
    training, evaluating, scoring = match.group(2), match.group(3), match.group(4)
    learned = int(training) - 1 if training else int(evaluating or scoring)
    h, m, s = (int(match.group(5) or 0), int(match.group(6)), int(match.group(7)))
    return learned, 3600 * h + 60 * m + s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1, help="repeat the run (one block each)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--iters", type=int, default=100)
    parser.add_argument("--every", type=int, default=2, help="evaluation point every N tasks")
    parser.add_argument("--line-every", type=float, default=5.0)
    parser.add_argument("--out", default="reports/benchmarks/eta.txt")
    args = parser.parse_args()
    blocks = [measure(args, run) for run in range(1, args.runs + 1)]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    head = [f"# python benchmarks/eta.py --threads {args.threads} --tasks {args.tasks} --iters "
            f"{args.iters} --every {args.every} --runs {args.runs}",
            f"# {commit}, {time.strftime('%Y-%m-%d')}, {os.cpu_count()}-core CPU, measured on a "
            "BUSY machine (other engineers' tests and a long sweep beside it; load averages "
            "below): the ETA must be honest under load, so it measures rates as it goes"]
    text = "\n".join(head + blocks) + "\n"
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(text, end="")


def measure(args: argparse.Namespace, number: int) -> str:
    """One run, summed up in a block of lines."""
    eval_at = ",".join(str(k) for k in range(args.every, args.tasks + 1, args.every))
    results = tempfile.mkdtemp(prefix="clbench-eta-")
    command = ["clbench", "run", "--method", "supsup", "--scenario", "gnu", "--dataset",
               "mnist-5k", "--tasks", str(args.tasks), "--iters", str(args.iters), "--eval-at",
               eval_at, "--threads", str(args.threads), "--results", results]
    env = {**os.environ, "CLBENCH_PROGRESS_EVERY": str(args.line_every)}
    load_before = os.getloadavg()
    proc = subprocess.Popen([sys.executable, "-m", "clbench", *command[1:]], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stamped: list[tuple[float, int, float]] = []  # (arrival, tasks learned, ETA printed)
    first = end = None
    assert proc.stderr is not None
    for text in proc.stderr:
        now = time.monotonic()
        if "done, " in text:
            end = now
        parsed = parse(text)
        if parsed is not None:
            first = first if first is not None else now
            stamped.append((now, *parsed))
        else:
            print(text, end="", file=sys.stderr)
    out = proc.stdout.read() if proc.stdout else ""
    proc.wait()
    load_after = os.getloadavg()
    if proc.returncode != 0 or end is None or not stamped:
        sys.exit(f"the run failed ({proc.returncode}):\n{out}")
    (record_path,) = Path(results).glob("*/record.json")
    timing = json.loads(record_path.read_text())["timing"]
    share = timing["eval_s"] / (timing["train_s"] + timing["eval_s"])

    start = first - args.line_every  # the first line comes one interval after the run starts
    total = end - start

    def at(moment: float) -> tuple[float, int, float]:
        return min(stamped, key=lambda s: abs(s[0] - moment))

    rows = []
    for name, (arrival, learned, eta) in (
            ("25% of the wall time", at(start + 0.25 * total)),
            ("50% of the wall time", at(start + 0.50 * total)),
            ("25% of the tasks", next(s for s in stamped if s[1] >= args.tasks // 4))):
        left = end - arrival
        elapsed = arrival - start
        linear = elapsed * (args.tasks - learned) / max(learned, 1)
        error = 100 * (eta - left) / left
        rows.append(f"{name:<22} at {elapsed:6.0f} s ({learned:3d} tasks learned): ETA printed "
                    f"{eta:5.0f} s, really left {left:5.0f} s, error {error:+6.1f}%"
                    f" | linear in tasks would say {linear:5.0f} s "
                    f"({100 * (linear - left) / left:+6.1f}%)")
    lines = [
        f"run {number}: {' '.join(command[:-2])} (evaluation points: every {args.every} tasks)",
        f"load average (1 min) {load_before[0]:.1f} before, {load_after[0]:.1f} after",
        f"wall time of the task loop {total:.0f} s; record timing: train {timing['train_s']:.0f} "
        f"s, evaluation {timing['eval_s']:.0f} s = {100 * timing['eval_s'] / total:.0f}% of the "
        f"loop's wall time ({100 * share:.0f}% of train + evaluation)",
        *rows,
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()

"""Per-task overhead of the dask runtime next to the local one, in one invocation.

    .venv/bin/python bench/dask_overhead.py [--n 300] [--repeats 1] [--max-workers 2]

Runs bench/flows/foreach_1000.py with ``--n N`` and bench/flows/start_end.py on three engines:
``local`` (tasks forked from the warm controller), ``local --isolation spawn`` (each task a fresh
interpreter running ``flow step``: the same process cost the dask runtime pays) and ``dask``
(the embedded LocalCluster). Per-task overhead = (wall(foreach) - wall(start_end)) / N, so the
cluster's start-up and shutdown cancel out. Figures are medians; every run uses a fresh
temporary directory. Also prints how long one ``flow step`` process takes on its own.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FLOWS = Path(__file__).resolve().parent / "flows"
ENGINES = {
    "local (fork)": ["--runtime", "local"],
    "local (spawn)": ["--runtime", "local", "--isolation", "spawn"],
    "dask (embedded)": ["--runtime", "dask"],
}


def wall(flow: str, args: list[str]) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "flowkernel.cli", "run", str(FLOWS / flow), "--quiet", *args]
        began = time.perf_counter()
        proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True)
        took = time.perf_counter() - began
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}")
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300, help="foreach tasks (default 300)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--max-workers", type=int, default=2)
    opts = parser.parse_args()
    common = ["--max-workers", str(opts.max_workers), "--max-num-splits", str(opts.n)]
    print(f"load average {os.getloadavg()[0]:.1f}, {os.cpu_count()} cores, N={opts.n}")
    print(f"{'engine':<18}{'start_end (s)':>15}{'foreach (s)':>14}{'per task (ms)':>15}")
    for name, args in ENGINES.items():
        fixed = statistics.median(wall("start_end.py", args + common) for _ in range(opts.repeats))
        foreach = statistics.median(
            wall("foreach_1000.py", [*args, *common, "--n", str(opts.n)])
            for _ in range(opts.repeats)
        )
        per_task = (foreach - fixed) / opts.n * 1000
        print(f"{name:<18}{fixed:>15.2f}{foreach:>14.2f}{per_task:>15.1f}", flush=True)


if __name__ == "__main__":
    main()

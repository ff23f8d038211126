"""Per-task overhead of the dask runtime next to the local one, in one invocation.

    .venv/bin/python bench/dask_overhead.py [--n 300] [--repeats 1] [--max-workers 2]
        [--engines "local (fork)" "dask (embedded)" ...] [--dask-scheduler-file F]

Runs bench/flows/foreach_1000.py with ``--n N`` and bench/flows/start_end.py on each engine:
``local (fork)`` (tasks forked from the warm controller), ``local (spawn)`` (each task a fresh
interpreter running ``flow step``), ``dask (embedded)`` (the embedded LocalCluster; each attempt
forked by the worker's warm fork server) and ``dask (no fork server)``
(``FLOWKERNEL_DASK_FORK_SERVER=0``: a fresh interpreter per attempt, as before the fork server);
with ``--dask-scheduler-file``, also ``dask (external)``: a cluster started by hand (there the
run's Dask ``Semaphore`` bounds the running steps).
Per-task overhead = (wall(foreach) - wall(start_end)) / N, so the cluster's start-up and
shutdown cancel out (their spread at load is the noise of that figure); ``body span/N`` is the
span from the first foreach body task's start to the last one's end (from their records) / N,
which leaves them out. Figures are medians; every run uses a fresh temporary directory.

Every engine's CPU per task (foreach less start_end, / N) is the whole process tree's, from
``getrusage(RUSAGE_CHILDREN)`` of this script. For the dask engines it also samples (psutil,
every 50 ms; a process that ends between samples is partly missed) where it goes: the
``flow`` process (flowkernel's controller, and the embedded cluster's Dask scheduler and client,
which live in it), the Dask worker processes (Dask's worker, the attempt's supervisor and log
relay), the fork servers, and the step processes themselves. The machine has 2 cores, so CPU
per task bounds the wall time per task from below at about CPU / 2.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

FLOWS = Path(__file__).resolve().parent / "flows"
ENGINES = {
    "local (fork)": (["--runtime", "local"], {}),
    "local (spawn)": (["--runtime", "local", "--isolation", "spawn"], {}),
    "dask (embedded)": (["--runtime", "dask"], {}),
    "dask (no fork server)": (["--runtime", "dask"], {"FLOWKERNEL_DASK_FORK_SERVER": "0"}),
}
FORK_SERVER = "flowkernel_runtime_dask.forkserver"


class CpuSampler:
    """Samples the CPU times of every process under ``pid`` until stopped; the last sample of
    each process counts (its reaped children's times are in it)."""

    def __init__(self, pid: int):
        self.root = pid
        self.seen: dict[int, tuple[str, float, float]] = {}  #: pid -> (kind, own, children)
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.done.is_set():
            try:
                root = psutil.Process(self.root)
                procs = [root, *root.children(recursive=True)]
            except psutil.Error:
                return
            for proc in procs:
                try:
                    times = proc.cpu_times()
                    kind = self._kind(proc)
                except psutil.Error:
                    continue
                own = times.user + times.system
                children = times.children_user + times.children_system
                self.seen[proc.pid] = (kind, own, children)
            time.sleep(0.05)

    def _kind(self, proc: psutil.Process) -> str:
        if proc.pid == self.root:
            return "flow process"
        cmd = " ".join(proc.cmdline())
        if FORK_SERVER in cmd:
            parent = " ".join(psutil.Process(proc.ppid()).cmdline())
            return "step processes" if FORK_SERVER in parent else "fork servers"
        if "flowkernel.cli" in cmd and " step " in f" {cmd} ":
            return "step processes"
        return "dask workers"

    def stop(self) -> dict[str, float]:
        """CPU seconds per kind; a fork server's reaped children count as step processes."""
        self.done.set()
        self.thread.join()
        totals: dict[str, float] = {}
        for kind, own, children in self.seen.values():
            totals[kind] = totals.get(kind, 0.0) + own
            if kind == "fork servers":
                totals["step processes"] = totals.get("step processes", 0.0) + children
        return totals


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _body_span(tmp: str) -> float:
    """Seconds from the first foreach body task's start to the last one's end (from their
    records): the run's steady part, without the cluster's start-up and shutdown."""
    times = []
    for path in glob.glob(os.path.join(tmp, ".flowkernel", "*", "*", "body", "*", "*.record.json")):
        with open(path) as fh:
            record = json.load(fh)
        times += [record["started_at"], record["finished_at"]]
    return max(times) - min(times) if times else 0.0


def wall(flow: str, args: list[str], env: dict[str, str], sample: bool = False):
    """Wall seconds of one run, and its CPU seconds by process kind (``sample``) plus
    ``"total"``: the whole process tree's, from the kernel (every process of a run is reaped
    within the tree: the dask workers reap their fork servers when they exit) and ``"span"``
    (:func:`_body_span`)."""
    before = _children_cpu()
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "flowkernel.cli", "run", str(FLOWS / flow), "--quiet", *args]
        began = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env={**os.environ, **env})  # fmt: skip
        sampler = CpuSampler(proc.pid) if sample else None
        out, err = proc.communicate()
        took = time.perf_counter() - began
        cpu = sampler.stop() if sampler else {}
        span = _body_span(tmp)
    cpu["total"] = _children_cpu() - before
    cpu["span"] = span
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out}\n{err}")
    return took, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300, help="foreach tasks (default 300)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--max-workers", type=int, default=2)
    parser.add_argument("--engines", nargs="*", default=list(ENGINES), choices=list(ENGINES))
    parser.add_argument(
        "--dask-scheduler-file",
        metavar="F",
        help="also run the engine 'dask (external)' on the cluster of this scheduler file "
        "(its workers' CPU is not in the figures: they are not this script's processes)",
    )
    opts = parser.parse_args()
    if opts.dask_scheduler_file:
        external = ["--runtime", "dask", "--dask-scheduler-file", opts.dask_scheduler_file]
        ENGINES["dask (external)"] = (external, {})
        opts.engines.append("dask (external)")
    common = ["--max-workers", str(opts.max_workers), "--max-num-splits", str(opts.n)]
    print(f"load average {os.getloadavg()[0]:.1f}, {os.cpu_count()} cores, N={opts.n}")
    print(f"{'engine':<23}{'start_end (s)':>15}{'foreach (s)':>14}{'per task (ms)':>15}"
          f"{'body span/N':>13}")  # fmt: skip
    breakdowns = {}
    for name in opts.engines:
        args, env = ENGINES[name]
        sample = "dask" in name and "external" not in name
        bases = [wall("start_end.py", args + common, env, sample) for _ in range(opts.repeats)]
        runs = [
            wall("foreach_1000.py", [*args, *common, "--n", str(opts.n)], env, sample)
            for _ in range(opts.repeats)
        ]
        fixed = statistics.median(took for took, _ in bases)
        foreach = statistics.median(took for took, _ in runs)
        per_task = (foreach - fixed) / opts.n * 1000
        span = statistics.median(cpu["span"] for _, cpu in runs) / opts.n * 1000
        for _, cpu in [*bases, *runs]:
            del cpu["span"]
        print(f"{name:<23}{fixed:>15.2f}{foreach:>14.2f}{per_task:>15.1f}{span:>13.1f}", flush=True)
        # the foreach run's CPU less the start_end run's: what the N tasks cost
        base, cpu = bases[-1][1], runs[-1][1]
        breakdowns[name] = {k: cpu.get(k, 0.0) - base.get(k, 0.0) for k in {*cpu, *base}}
    for name, cpu in breakdowns.items():
        total = cpu.pop("total") / opts.n * 1000
        print(f"\nCPU per task, {name} (foreach less start_end, / N): {total:.1f} ms")
        if cpu:
            print("  sampled by process kind (short-lived processes may be missed):")
        for kind, seconds in sorted(cpu.items(), key=lambda kv: -kv[1]):
            print(f"  {kind:<16}{seconds / opts.n * 1000:>8.1f} ms")


if __name__ == "__main__":
    main()

"""Where the 200 MB artifact flow's time goes, phase by phase, inside the real task processes.

    .venv/bin/python bench/artifact_phases.py [--baseline-python OTHER/.venv/bin/python]
                                              [--repeats 8] [--sleep 2] [--size-mb 200]

Runs ``bench/flows/big_artifact.py`` with ``flow run`` in-process (this file again, with
``--drive``) after wrapping ``FlowStore.save``/``load`` and the local runtime's ``run_task``
with time and CPU marks; the forked task processes inherit the wrappers. The installs
alternate within every repeat, each run in a fresh temporary directory; ``--sleep`` waits
before each run (memory freed by the previous run is then handed back to the host, as between
real runs). Phases, in the order they happen:

startup     ``flow run`` start to the ``start`` task's first line (interpreter, imports, run
            records, the parameters task, the fork)
build       the user's ``b"\\x01" * N`` in ``start`` (until the artifact is saved)
save        pickling, writing and hashing the artifact (``save cpu``: CPU of the task process,
            ``save sha1``: the part of it in sha1, on the hashing thread: the rest is the write)
start tail  the rest of ``start``: the record, freeing the value
handoff     ``start`` returned -> ``check`` began (exit, reap, commit, fork)
load        reading, verifying and unpickling it in ``check`` (``load cpu``, ``load sha1``
            likewise: the rest of the CPU is the read, the copy and the page faults)
check tail  the rest of ``check`` (freeing the value)
to end      ``check`` returned -> ``end`` began
end rest    the ``end`` task and the run's end
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import runpy
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FLOW = Path(__file__).resolve().parent / "flows" / "big_artifact.py"


def drive(flow: str, marks: str, args: list[str]) -> None:
    """Run ``flow run FLOW`` in this process with marks around the artifact's phases."""
    import hashlib
    import threading
    import types

    import flowkernel.datastore as ds
    import flowkernel_runtime_local.controller as ctl

    hashed = [0.0]  # CPU seconds in sha1 updates so far, whichever thread of the process
    lock = threading.Lock()

    class TimedSha1:
        """hashlib.sha1 for the datastore, counting the CPU time of its updates."""

        def __init__(self, data: bytes = b"") -> None:
            self.sha = hashlib.sha1()
            if data:
                self.update(data)

        def update(self, data) -> None:
            t = time.thread_time()
            self.sha.update(data)
            with lock:
                hashed[0] += time.thread_time() - t

        def hexdigest(self) -> str:
            return self.sha.hexdigest()

    ds.hashlib = types.SimpleNamespace(sha1=TimedSha1)

    def mark(what: str) -> None:
        ru = resource.getrusage(resource.RUSAGE_SELF)
        with open(marks, "a") as fh:
            fh.write(json.dumps([what, time.time(), ru.ru_utime + ru.ru_stime, hashed[0]]) + "\n")

    save, load, run_task = ds.FlowStore.save, ds.FlowStore.load, ctl.run_task

    def marked_save(self, name, value, verified=None, **options):
        mark(f"save0:{name}")
        try:
            return save(self, name, value, verified, **options)
        finally:
            mark(f"save1:{name}")

    def marked_load(self, sha, name=None, task=None, **options):
        mark(f"load0:{name}")
        try:
            return load(self, sha, name, task, **options)
        finally:
            mark(f"load1:{name}")

    def marked_run_task(*a, **k):
        mark(f"task0:{a[3].step}")
        try:
            return run_task(*a, **k)
        finally:
            mark(f"task1:{a[3].step}")

    ds.FlowStore.save, ds.FlowStore.load, ctl.run_task = marked_save, marked_load, marked_run_task
    sys.argv = ["flow", "run", flow, "--quiet", *args]
    runpy.run_module("flowkernel.cli", run_name="__main__")


def phases(marks: Path, t0: float, wall: float) -> dict[str, float]:
    m = {}
    for line in marks.read_text().splitlines():
        what, t, cpu, hashed = json.loads(line)
        m.setdefault(what, (t, cpu, hashed))
    return {
        "wall": wall,
        "startup": m["task0:start"][0] - t0,
        "build": m["save0:blob"][0] - m["task0:start"][0],
        "save": m["save1:blob"][0] - m["save0:blob"][0],
        "save cpu": m["save1:blob"][1] - m["save0:blob"][1],
        "save sha1": m["save1:blob"][2] - m["save0:blob"][2],
        "start tail": m["task1:start"][0] - m["save1:blob"][0],
        "handoff": m["task0:check"][0] - m["task1:start"][0],
        "load": m["load1:blob"][0] - m["load0:blob"][0],
        "load cpu": m["load1:blob"][1] - m["load0:blob"][1],
        "load sha1": m["load1:blob"][2] - m["load0:blob"][2],
        "check tail": m["task1:check"][0] - m["load1:blob"][0],
        "to end": m["task0:end"][0] - m["task1:check"][0],
        "end rest": t0 + wall - m["task0:end"][0],
    }


def run_once(python: str, size_mb: int) -> dict[str, float]:
    work = Path(tempfile.mkdtemp(prefix="fkphase."))
    try:
        shutil.copy(FLOW, work)
        marks = work / "marks.jsonl"
        cmd = [python, __file__, "--drive", str(marks), FLOW.name, "--size_mb", str(size_mb)]
        t0 = time.time()
        subprocess.run(cmd, cwd=work, check=True, capture_output=True)
        return phases(marks, t0, time.time() - t0)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--drive":
        drive(sys.argv[3], sys.argv[2], sys.argv[4:])
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--baseline-python", help="python of another flowkernel venv (before/after)")
    ap.add_argument("--repeats", type=int, default=8)
    ap.add_argument("--sleep", type=float, default=2.0, help="seconds to wait before each run")
    ap.add_argument("--size-mb", type=int, default=200)
    opts = ap.parse_args()
    installs = {"flowkernel": sys.executable}
    if opts.baseline_python:
        installs["baseline"] = opts.baseline_python
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    runs: dict[str, list[dict[str, float]]] = {k: [] for k in installs}
    for _ in range(opts.repeats):
        for label, python in installs.items():
            time.sleep(opts.sleep)
            runs[label].append(run_once(python, opts.size_mb))
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"\nms, median [min-max] of {opts.repeats} alternating runs, {opts.size_mb} MB artifact")
    print(f"{'phase':12}" + "".join(f"{label:>24}" for label in installs))
    for key in runs["flowkernel"][0]:
        cells = []
        for label in installs:
            v = sorted(r[key] * 1000 for r in runs[label])
            cells.append(f"{statistics.median(v):6.0f} [{v[0]:5.0f}-{v[-1]:5.0f}]")
        print(f"{key:12}" + "".join(f"{c:>24}" for c in cells))


if __name__ == "__main__":
    main()

"""How long a ``--max-workers`` slot idles between two tasks, measured in the fork server: for
each task forked into a slot that a reaped task freed, the time from that reap to the fork.
One in-process ``flow run`` of the foreach flow (as ``bench/cpu_split.py``):

    FLOWKERNEL_FORK_LOOKAHEAD=0|1 .venv/bin/python bench/slot_gap.py [--n 1000] [--max-workers 2]

Without the server's queue (``FLOWKERNEL_FORK_LOOKAHEAD=0``) the gap is the controller's round
trip (the exit event, reading the record, queueing the successor, the next launch request);
with it, the server forks a queued task in the reap itself. Prints one line: wall and CPU/2
per task (the whole tree's CPU; with 2 workers on 2 CPUs, wall - CPU/2 is roughly the time a
CPU was idle or taken by other processes), the median and mean gap, and the gaps' sum per task
and slot (the most the wall could gain). The server's ``_reap``/``_fork`` are wrapped in this
process before the server is forked from it; timestamps are ``time.perf_counter()``
(monotonic, the same clock in every process). Run it alternately with the variable at 0 and 1.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

from cpu_split import run_foreach


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--max-workers", type=int, default=2)
    opts = ap.parse_args()
    os.chdir(tempfile.mkdtemp(prefix="fkslotgap."))
    from flowkernel_runtime_local import forkserver

    out = Path("events.json").resolve()
    server = forkserver._Server
    reap, fork, serve = server._reap, server._fork, server.serve
    log: list[tuple[str, float]] = []

    def _reap(self, pidfd):  # type: ignore[no-untyped-def]
        log.append(("r", time.perf_counter()))
        return reap(self, pidfd)

    def _fork(self, *args):  # type: ignore[no-untyped-def]
        log.append(("f", time.perf_counter()))
        return fork(self, *args)

    def _serve(self):  # type: ignore[no-untyped-def]
        try:
            return serve(self)
        finally:
            out.write_text(json.dumps(log))

    server._reap, server._fork, server.serve = _reap, _fork, _serve  # type: ignore[method-assign]
    n = opts.n
    before = [resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    wall = run_foreach(n, opts.max_workers)
    after = [resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    pairs = zip(before, after, strict=True)
    cpu = sum(b.ru_utime - a.ru_utime + b.ru_stime - a.ru_stime for a, b in pairs)
    freed: list[float] = []  # reaps whose slot no fork has taken yet, oldest first
    gaps: list[float] = []
    for kind, stamp in json.loads(out.read_text()):
        if kind == "r":
            freed.append(stamp)
        elif freed:
            gaps.append((stamp - freed.pop(0)) * 1000)
    mode = os.environ.get("FLOWKERNEL_FORK_LOOKAHEAD", "1")
    print(
        f"lookahead={mode} wall {wall / n * 1000:5.2f} ms/task, CPU/{opts.max_workers} "
        f"{cpu / n * 1000 / opts.max_workers:5.2f} ms/task, load {os.getloadavg()[0]:4.1f} | "
        f"slot gap median {statistics.median(gaps):6.3f} ms, mean {statistics.mean(gaps):6.3f} "
        f"ms, sum per task and slot {sum(gaps) / n / opts.max_workers:5.3f} ms"
    )


if __name__ == "__main__":
    main()

"""CPU time and page faults per task, split between the controller, the fork server and the
task processes: one in-process ``flow run`` of the foreach flow.

    FLOWKERNEL_FORK_SERVER=0|1 .venv/bin/python bench/cpu_split.py [--n 300] [--max-workers 2]

The run happens in this process (``flowkernel.cli.main.main``), so ``getrusage(RUSAGE_SELF)``
is the controller's own; the fork server's own figures are read from ``/proc/PID/stat`` just
before it is stopped (its reaped children, the tasks, are its ``cutime``/``cstime``/
``cminflt``); without a fork server the tasks are this process's ``RUSAGE_CHILDREN``. The
committer (double-forked: in no ``wait4`` figure) is read from its ``/proc/PID/stat`` the same
way, just before it is told to stop (its last batch is missed); the guardian is counted
nowhere. Figures are per foreach
task but include the run's fixed costs (loading the flow, its three other tasks): use
``--n 300`` or more. Prints one line; run it alternately with the variable at 0 and 1 (the
machine's load changes between runs).
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

FLOW = Path(__file__).resolve().parent / "flows" / "foreach_1000.py"


def _proc_stat(pid: int, into: dict[str, float]) -> None:
    """``minflt``, ``cminflt`` (faults), ``utime``, ``stime``, ``cutime``, ``cstime`` (seconds)
    of process ``pid`` from ``/proc/PID/stat``, into ``into``."""
    tick = os.sysconf("SC_CLK_TCK")
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    names = ("minflt", "cminflt", "_", "_", "utime", "stime", "cutime", "cstime")
    for name, value in zip(names, fields[7:15], strict=True):
        into[name] = int(value) / (tick if "time" in name else 1)


def watch_committer() -> dict[str, float]:
    """A dict that gets the committer's own figures (as :func:`watch_fork_server`) just before
    it is told to stop. Call before the run."""
    from flowkernel_runtime_local import commit

    committer: dict[str, float] = {}
    close = commit.Committer.close

    def read_then_close(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        if self.pid is not None:
            try:
                _proc_stat(self.pid, committer)
            except OSError:
                pass
        return close(self, *args, **kwargs)

    commit.Committer.close = read_then_close  # type: ignore[method-assign]
    return committer


def watch_fork_server() -> dict[str, float]:
    """A dict that gets the fork server's own and its reaped children's (the tasks') figures
    from ``/proc/PID/stat`` just before the server is stopped: ``minflt``, ``cminflt`` (faults)
    and ``utime``, ``stime``, ``cutime``, ``cstime`` (seconds). Call before the run."""
    from flowkernel_runtime_local import forkserver

    server: dict[str, float] = {}
    close = forkserver.ForkServer.close

    def read_then_close(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        _proc_stat(self.pid, server)
        return close(self, *args, **kwargs)

    forkserver.ForkServer.close = read_then_close  # type: ignore[method-assign]
    return server


def run_foreach(n: int, max_workers: int) -> float:
    """Run the foreach flow of ``n`` tasks in this process (``flow run``); its wall seconds."""
    from flowkernel.cli.main import main as flow

    start = time.perf_counter()
    try:
        flow(["run", str(FLOW), "--max-workers", str(max_workers), "--max-num-splits",
              str(n + 1), "--quiet", "--n", str(n)])  # fmt: skip
    except SystemExit as exc:
        assert not exc.code, exc.code
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--max-workers", type=int, default=2)
    opts = ap.parse_args()
    os.chdir(tempfile.mkdtemp(prefix="fkcpusplit."))

    server = watch_fork_server()
    committer = watch_committer()
    n = opts.n
    me0, kids0 = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    wall = run_foreach(n, opts.max_workers)
    me, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )

    def ms(seconds: float) -> str:
        return f"{seconds / n * 1000:5.2f}"

    parts = [
        f"wall {ms(wall)} ms/task, load {os.getloadavg()[0]:4.1f} |",
        f"controller user {ms(me.ru_utime - me0.ru_utime)} sys {ms(me.ru_stime - me0.ru_stime)}"
        f" faults {(me.ru_minflt - me0.ru_minflt) / n:4.0f} |",
    ]
    if server:
        parts.append(
            f"fork server user {ms(server['utime'])} sys {ms(server['stime'])}"
            f" faults {server['minflt'] / n:4.0f} |"
        )
        user, sys_, faults = server["cutime"], server["cstime"], server["cminflt"]
    else:
        user = kids.ru_utime - kids0.ru_utime
        sys_ = kids.ru_stime - kids0.ru_stime
        faults = kids.ru_minflt - kids0.ru_minflt
    total = (me.ru_utime - me0.ru_utime + me.ru_stime - me0.ru_stime) + (
        kids.ru_utime - kids0.ru_utime + kids.ru_stime - kids0.ru_stime
    )
    parts.append(f"tasks user {ms(user)} sys {ms(sys_)} faults {faults / n:4.0f} |")
    if committer:
        parts.append(
            f"committer user {ms(committer['utime'])} sys {ms(committer['stime'])}"
            f" faults {committer['minflt'] / n:4.0f} |"
        )
        total += committer["utime"] + committer["stime"]
    parts.append(f"all CPU {ms(total)} ms/task")
    print(" ".join(parts))


if __name__ == "__main__":
    main()

"""CPU time and page faults per task of the run's double-forked helpers (the guardian and the
committer), which ``wait4`` of the run's process tree does not count.

    PYTHON bench/helper_cpu.py [--n 1000] [--max-workers 2]

Runs ``PYTHON -m flowkernel.cli run`` of the foreach flow (``--n`` tasks) in a scratch
directory and samples ``/proc`` every 20 ms for the processes re-parented to init (or to a
subreaper) whose command line is that run's: their last figures before they exit are their
totals. The committer is the one with the more CPU (its fsyncs); the guardian reads
``+pgid``/``-pgid`` lines (two per task) and waits. Run it alternately with two
installs: the figures are per foreach task and include the run's fixed cost (use ``--n 1000``).
Ticks are 10 ms: one tick is 10 us per task at ``--n 1000``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FLOW = Path(__file__).resolve().parent / "flows" / "foreach_1000.py"


def _stat(pid: int) -> tuple[int, int, float, int] | None:
    """(parent pid, session id, user + system seconds, minor faults) of ``pid``, or None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    tick = os.sysconf("SC_CLK_TCK")
    return (
        int(fields[1]),
        int(fields[3]),
        (int(fields[11]) + int(fields[12])) / tick,
        int(fields[7]),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--max-workers", type=int, default=2)
    opts = ap.parse_args()
    where = tempfile.mkdtemp(prefix="fkhelpers.")
    args = ["run", str(FLOW), "--n", str(opts.n), "--max-workers", str(opts.max_workers),
            "--max-num-splits", str(opts.n + 1), "--quiet"]  # fmt: skip
    run = subprocess.Popen([sys.executable, "-m", "flowkernel.cli", *args], cwd=where,
                           stdout=subprocess.DEVNULL)  # fmt: skip
    wanted = "\0".join(args).encode()
    last: dict[int, tuple] = {}
    while run.poll() is None:
        ours: dict[int, tuple] = {}  # the run's processes (forks of the controller)
        for name in os.listdir("/proc"):
            if not name.isdigit() or int(name) == os.getpid():
                continue
            pid = int(name)
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            stat = _stat(pid) if wanted in cmdline else None
            if stat is not None:
                ours[pid] = stat
        for pid, stat in ours.items():  # re-parented away from the run: a helper
            if pid != run.pid and stat[0] not in ours:
                last[pid] = stat
        time.sleep(0.02)
    shutil.rmtree(where, ignore_errors=True)
    assert run.returncode == 0, run.returncode
    for pid, (_, _, cpu, faults) in sorted(last.items(), key=lambda kv: kv[1][2]):
        print(f"helper {pid}: {cpu / opts.n * 1e6:5.0f} us CPU, "
              f"{faults / opts.n:5.2f} faults per task")  # fmt: skip


if __name__ == "__main__":
    main()

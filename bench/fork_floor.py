"""The fork floor: what one task process costs before flowkernel does anything in it.

    .venv/bin/python bench/fork_floor.py FLOW_FILE [--n 1000] [--concurrency 2] [--write]

Builds the state of a warm ``flow run`` controller (flowkernel, click, pluggy, attrs, the
kernel with its plugins and the local runtime imported, the flow module loaded, its graph
built, ``gc.freeze()``), then forks ``--n`` children, ``--concurrency`` at a time, each of which
exits at once (``--write``: after writing one small file, about the size of a task record,
into a directory of its own). Prints one JSON line: per child, the wall time, and the page
faults, system and user time of the parent and its children together (``getrusage``).

``bench/run_bench.py`` runs it as the ``fork floor`` rows, in the same invocation as the
foreach row it is compared with.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import sys
import tempfile
import time


def warm_controller(flow_file: str) -> None:
    """Import and build what a ``flow run`` controller has when it forks its first task."""
    import attrs  # noqa: F401
    import click  # noqa: F401
    import pluggy  # noqa: F401

    import flowkernel.cli.main  # noqa: F401
    from flowkernel.engine import executor, runs  # noqa: F401
    from flowkernel.flow.loader import load_flow
    from flowkernel.kernel import Kernel

    kernel = Kernel.discover()
    kernel.runtime("local").factory(kernel)
    import flowkernel_runtime_local.controller  # noqa: F401

    kernel.validated_graph(load_flow(flow_file))
    gc.freeze()


def child(write_dir: str | None, i: int) -> None:  # pragma: no cover - runs in the child
    code = 0
    try:
        if write_dir is not None:
            task_dir = os.path.join(write_dir, str(i))
            os.mkdir(task_dir)
            fd = os.open(os.path.join(task_dir, "0.record.json"), os.O_WRONLY | os.O_CREAT, 0o644)
            os.write(fd, b"x" * 900)
            os.close(fd)
    except OSError:
        code = 1
    os._exit(code)


def usage() -> tuple[float, float, int]:
    """(user s, system s, minor faults) of this process and its reaped children."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (
        me.ru_utime + kids.ru_utime,
        me.ru_stime + kids.ru_stime,
        me.ru_minflt + kids.ru_minflt,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("flow_file")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=2)
    ap.add_argument("--write", action="store_true", help="each child writes one small file")
    opts = ap.parse_args()
    warm_controller(opts.flow_file)
    write_dir = tempfile.mkdtemp(prefix="fkfloor.") if opts.write else None
    failed = 0
    u0, s0, f0 = usage()
    start = time.perf_counter()
    running = 0
    for i in range(opts.n):
        if running == opts.concurrency:
            _, status = os.wait()
            failed += status != 0
            running -= 1
        if os.fork() == 0:
            child(write_dir, i)
        running += 1
    while running:
        _, status = os.wait()
        failed += status != 0
        running -= 1
    wall = time.perf_counter() - start
    u1, s1, f1 = usage()
    if write_dir is not None:
        import shutil

        shutil.rmtree(write_dir, ignore_errors=True)
    n = opts.n
    out = {
        "wall_ms": wall / n * 1000,
        "user_ms": (u1 - u0) / n * 1000,
        "sys_ms": (s1 - s0) / n * 1000,
        "faults": (f1 - f0) / n,
        "failed": failed,
    }
    json.dump(out, sys.stdout)
    print()


if __name__ == "__main__":
    main()

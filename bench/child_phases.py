"""Page faults and CPU time of each phase of a forked task process: one in-process ``flow run``
of the foreach flow, with ``getrusage`` marks inside every body task the fork server forks.

    .venv/bin/python bench/child_phases.py [--n 300] [--max-workers 2] [--rounds 1]

The run happens in this process (as in ``bench/cpu_split.py``), through the real controller
and fork server. Before the run, the functions a task calls are wrapped so that each records
``(minor faults, user + system CPU)`` of its own process on entry and exit (the wrappers are
made before the fork server is forked: they are in every task's parent). Each body task writes
its marks to a file when ``run_task`` returns; this prints, per phase, the median over the
body tasks of the faults and CPU between consecutive marks, and the task processes' totals
(the fork server's reaped children, from ``/proc``; those include the start, join and end
tasks and the exit: use ``--n 300`` or more).

Phases (named by the mark that ends them): ``enter`` the child's set-up after the fork
(:func:`flowkernel.engine.forkchild.enter`), ``request`` unpickling the launch request,
``<function`` the work from the previous mark up to that call, ``function>`` the call itself,
``end`` the rest of ``run_task``. The wrappers themselves cost a few faults (their code runs
for the first time in each child): compare runs of this script, not its absolute figures with
``bench/run_bench.py``'s. Functions that do not exist (in another version) are not wrapped, so
the same script measures an older install (``--python``-less: run it with that install's
interpreter).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile

from cpu_split import run_foreach, watch_fork_server

#: (module, attribute) of the functions whose calls are marked, in the order a task calls them
WRAPPED = (
    ("flowkernel.engine.executor", "step_decorators"),
    ("flowkernel.engine.executor", "_bind_inputs"),
    ("flowkernel.engine.executor", "_set_current"),
    ("flowkernel.engine.executor", "_run_user_code"),
    ("flowkernel.engine.executor", "_persist"),
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--max-workers", type=int, default=2)
    ap.add_argument(
        "--wrap",
        action="append",
        default=[],
        metavar="MODULE:ATTR",
        help="mark this function's calls too (ATTR may be Class.method)",
    )
    opts = ap.parse_args()
    os.chdir(tempfile.mkdtemp(prefix="fkphases."))
    import importlib

    from flowkernel.engine import forkchild
    from flowkernel_runtime_local import controller

    out_path = os.path.abspath("marks.txt")
    out_fd = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    getrusage, SELF = resource.getrusage, resource.RUSAGE_SELF
    marks: list[tuple[str, int, float]] = []

    def mark(name: str) -> None:
        r = getrusage(SELF)
        marks.append((name, r.ru_minflt, r.ru_utime + r.ru_stime))

    def wrap(fn, name):  # type: ignore[no-untyped-def]
        def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
            mark("<" + name)
            try:
                return fn(*args, **kwargs)
            finally:
                mark(name + ">")

        return wrapper

    enter = forkchild.enter

    def marked_enter(*args, **kwargs):  # type: ignore[no-untyped-def]
        marks.clear()
        mark("fork")
        enter(*args, **kwargs)
        mark("enter")

    forkchild.enter = marked_enter  # type: ignore[assignment]
    extra = [tuple(item.split(":")) for item in opts.wrap]
    for module, path in (*WRAPPED, *extra):
        owner: object = importlib.import_module(module)
        *parents, attr = path.split(".")
        for parent in parents:
            owner = getattr(owner, parent)
        if hasattr(owner, attr):
            setattr(owner, attr, wrap(getattr(owner, attr), path))
    import pickle
    import types

    shim = types.SimpleNamespace(**vars(pickle))
    shim.loads = wrap(pickle.loads, "loads")
    controller.pickle = shim  # type: ignore[assignment]  # the child's request is unpickled
    run_task = controller.run_task

    def marked_run_task(flow_cls, graph, store, spec, *args, **kwargs):  # type: ignore[no-untyped-def]
        mark("request")
        code = run_task(flow_cls, graph, store, spec, *args, **kwargs)
        mark("end")
        if spec.step == "body":
            line = " ".join(f"{n}:{f}:{c:.6f}" for n, f, c in marks)
            os.write(out_fd, (line + "\n").encode())
        return code

    controller.run_task = marked_run_task  # type: ignore[assignment]

    server = watch_fork_server()
    n = opts.n
    wall = run_foreach(n, opts.max_workers)
    os.close(out_fd)

    phases: dict[str, list[tuple[int, float]]] = {}
    totals: list[tuple[int, float]] = []
    with open(out_path) as fh:
        for line in fh:
            items = [item.rsplit(":", 2) for item in line.split()]
            prev = None
            for name, faults, cpu in items:
                if prev is not None:
                    phases.setdefault(name, []).append(
                        (int(faults) - prev[0], float(cpu) - prev[1])
                    )
                prev = (int(faults), float(cpu))
            first, last = items[0], items[-1]
            totals.append((int(last[1]) - int(first[1]), float(last[2]) - float(first[2])))
    print(f"{len(totals)} body tasks, wall {wall / n * 1000:.2f} ms/task, load "
          f"{os.getloadavg()[0]:.2f}; per body task, medians:")  # fmt: skip
    for name, values in phases.items():
        faults = statistics.median(v[0] for v in values)
        cpu = statistics.median(v[1] for v in values) * 1e6
        print(f"  {name:18} {faults:5.0f} faults {cpu:6.0f} us")
    faults = statistics.median(v[0] for v in totals)
    cpu = statistics.median(v[1] for v in totals) * 1e6
    print(f"  {'fork -> end':18} {faults:5.0f} faults {cpu:6.0f} us")
    if server:
        cpu_ms = (server["cutime"] + server["cstime"]) / n * 1000
        print(f"task processes (all, with exit, /proc of the server): "
              f"{server['cminflt'] / n:.0f} faults, {cpu_ms:.2f} ms CPU per task")  # fmt: skip


if __name__ == "__main__":
    main()

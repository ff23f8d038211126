"""The fixed cost of a ``flow run``, phase by phase: where the wall and the controller's CPU go.

    .venv/bin/python bench/run_phases.py [--baseline-python OTHER/.venv/bin/python]
                                         [--repeats 21] [--flow bench/flows/start_end.py]

Each run starts a fresh interpreter on this file with ``--drive``: it marks the time (and the
controller's CPU, ``getrusage``) as ``flow run FLOW`` goes through its phases, by wrapping a
few functions as their modules are imported (so no module is imported earlier than ``flow
run`` imports it) and ``os.fork``/``os.waitpid``/``os.fsync``. The parent notes the time
before it starts the interpreter and when ``wait4`` returns (the CPU of the whole tree comes
from ``wait4``). The installs alternate within every repeat, each run in a fresh temporary
directory. Phases, in the order they happen:

interp      the bare interpreter and ``site`` (up to the first line of the driver)
cli import  importing ``flowkernel.cli.main`` (click, the kernel's modules, the commands)
to kernel   click parsing ``flow run`` up to the kernel's discovery
discover    :meth:`Kernel.discover`: entry points found, plugins imported and registered
flow        the flow file imported, its graph built and validated
to records  the run's options parsed, the run options built
records     :func:`start_run`: the run's directory, ``_run.json``, ``latest_run``, the
            parameters task (fsync'd records)
helpers     :func:`execute` to the first task's launch: ``_controller.json``, the runtime's
            modules, the committer, the guardian and the fork server, the poller, the sinks
tasks       the first launch to the last task's exit seen by the controller
close       the fork server and the committer stopped, ``_ended.json``
exit        ``sys.exit`` to the parent's ``wait4`` (the interpreter's finalization, exit)

``forks`` is the time the controller spent in ``os.fork`` and waiting for the committer's and
the guardian's intermediate children; ``fsyncs`` the time in ``os.fsync`` (the controller's
own; the committer's are in its process) and ``nfsync`` their count; ``ctl json`` and ``ended
json`` the writes of ``_controller.json`` and ``_ended.json``; ``committer``, ``guardian`` and
``server`` the starts of the helpers, ``reap`` the reaping of the intermediate children (where
it is separate).
"""

from __future__ import annotations

import os
import sys
import time

#: Parts of the phases: time in these calls (``n fsync``: how many), whichever phase.
SUB = ["forks", "fsyncs", "nfsync", "ctl json", "committer", "guardian", "server", "reap",
       "ended json"]  # fmt: skip
PHASES = [
    "interp",
    "cli import",
    "to kernel",
    "discover",
    "flow",
    "to records",
    "records",
    "helpers",
    "tasks",
    "close",
    "exit",
]


def _cpu() -> float:
    return time.process_time()


def drive(marks_path: str, argv: list[str]) -> None:  # pragma: no cover - bench only
    """Run ``flow run`` in this process (``argv``), marking its phases into ``marks_path``."""
    marks: list[tuple[str, float, float]] = [("start", time.time(), _cpu())]
    totals = dict.fromkeys(SUB, 0.0)

    def mark(name: str) -> None:
        marks.append((name, time.time(), _cpu()))

    def timed(fn, key, count=None):
        def wrapper(*args, **kwargs):
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                totals[key] += time.perf_counter() - t
                if count:
                    totals[count] += 1

        return wrapper

    real_fork = os.fork

    def fork():
        t = time.perf_counter()
        pid = real_fork()
        if pid:
            totals["forks"] += time.perf_counter() - t
        return pid

    os.fork = fork
    os.fsync = timed(os.fsync, "fsyncs", "nfsync")
    real_waitpid = os.waitpid

    def waitpid(pid, options):
        t = time.perf_counter()
        try:
            return real_waitpid(pid, options)
        finally:
            if options == 0:  # the helpers' intermediate children (and blocking reaps)
                totals["forks"] += time.perf_counter() - t

    os.waitpid = waitpid

    def before(fn, name):
        def wrapper(*args, **kwargs):
            mark(name)
            return fn(*args, **kwargs)

        return wrapper

    def around(fn, first, after):
        def wrapper(*args, **kwargs):
            mark(first)
            try:
                return fn(*args, **kwargs)
            finally:
                mark(after)

        return wrapper

    launched = [False]

    def patch(module) -> None:
        name = module.__name__
        if name == "flowkernel.kernel":
            kernel = module.Kernel
            kernel.discover = classmethod(around(kernel.discover.__func__, "discover", "flow"))
        elif name == "flowkernel.engine.runs":
            module.start_run = around(module.start_run, "records", "records end")
            module.execute = before(module.execute, "helpers")
        elif name == "flowkernel.cli.run_cmds":
            module._parse = before(module._parse, "to records")
        elif name == "flowkernel_runtime_local.controller":
            ctl = module._Controller
            real_launch = ctl.launch

            def launch(self, attempt):
                if not launched[0]:
                    launched[0] = True
                    mark("tasks")
                return real_launch(self, attempt)

            ctl.launch = launch
            ctl.close = before(ctl.close, "close")

        elif name == "flowkernel_runtime_local.commit":
            module.Committer.start = timed(module.Committer.start, "committer")
        elif name == "flowkernel_runtime_local.workers":
            module.Guardian.start = classmethod(timed(module.Guardian.start.__func__, "guardian"))
            if hasattr(module, "reap_intermediates"):
                module.reap_intermediates = timed(module.reap_intermediates, "reap")
        elif name == "flowkernel_runtime_local.forkserver":
            module.ForkServer.start = classmethod(timed(module.ForkServer.start.__func__, "server"))
        elif name == "flowkernel.engine.run_state":
            module.RunController.write = timed(module.RunController.write, "ctl json")
            module.RunEnding.write = timed(module.RunEnding.write, "ended json")

    wanted = {
        "flowkernel.kernel",
        "flowkernel.engine.runs",
        "flowkernel.cli.run_cmds",
        "flowkernel_runtime_local.controller",
        "flowkernel_runtime_local.commit",
        "flowkernel_runtime_local.workers",
        "flowkernel_runtime_local.forkserver",
        "flowkernel.engine.run_state",
    }

    class Patcher:
        """A meta path finder that patches the wanted modules right after they execute."""

        @staticmethod
        def find_spec(fullname, path=None, target=None):
            if fullname not in wanted:
                return None
            for finder in sys.meta_path:
                if finder is Patcher or not hasattr(finder, "find_spec"):
                    continue
                spec = finder.find_spec(fullname, path, target)
                if spec is not None:
                    real_exec = spec.loader.exec_module

                    def exec_module(module, real_exec=real_exec):
                        real_exec(module)
                        patch(module)

                    spec.loader.exec_module = exec_module
                    return spec
            return None

    sys.meta_path.insert(0, Patcher)

    def write_marks() -> None:
        mark("exit")
        import json

        with open(marks_path, "w") as fh:
            json.dump({"marks": marks, "totals": totals}, fh)

    code = 0
    try:
        try:  # as the `flow` console script does (installs that have it)
            from flowkernel.startup import pause_gc
        except ImportError:
            pass
        else:
            pause_gc()
        from flowkernel.cli.main import cli

        mark("to kernel")
        cli.main(args=argv, prog_name="flow")
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        write_marks()
    sys.stdout.flush()
    sys.exit(code)


def measure(python: str, flow: str, workdir: str) -> dict[str, float]:
    """One run of ``flow run FLOW`` with ``python``: phase -> ms (and the whole tree's CPU)."""
    import json
    import subprocess

    marks_path = os.path.join(workdir, "marks.json")
    argv = [python, os.path.abspath(__file__), "--drive", marks_path, "run", flow]
    t0 = time.time()
    proc = subprocess.Popen(argv, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    t_end = time.time()
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode() if proc.stderr else ""
    proc.stderr.close()
    if proc.returncode != 0:
        raise SystemExit(f"{python}: flow run failed ({proc.returncode}):\n{err}")
    with open(marks_path) as fh:
        data = json.load(fh)
    at = {name: (t, cpu) for name, t, cpu in data["marks"]}
    edges = [("interp", t0, at["start"][0])]
    order = ["start", "to kernel", "discover", "flow", "to records", "records",
             "records end", "helpers", "tasks", "close", "exit"]  # fmt: skip
    names = ["cli import", "to kernel", "discover", "flow", "to records", "records",
             "records end", "helpers", "tasks", "close"]  # fmt: skip
    for name, a, b in zip(names, order, order[1:], strict=False):
        edges.append((name, at[a][0], at[b][0]))
    edges.append(("exit", at["exit"][0], t_end))
    out = {}
    for name, a, b in edges:
        if name == "records end":  # from the records to execute(): _announce, nothing much
            out["helpers"] = out.get("helpers", 0.0) + (b - a) * 1000
            continue
        out[name] = out.get(name, 0.0) + (b - a) * 1000
    out["wall"] = (t_end - t0) * 1000
    out["ctl cpu"] = (at["exit"][1]) * 1000
    out["tree cpu"] = (usage.ru_utime + usage.ru_stime) * 1000
    for key, value in data["totals"].items():
        out[key] = value if key == "nfsync" else value * 1000
    return out


def main() -> None:
    import argparse
    import shutil
    import statistics
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline-python", default=None)
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--flow", default="bench/flows/start_end.py")
    args = parser.parse_args()
    flow = os.path.abspath(args.flow)
    engines = {"flowkernel": sys.executable}
    if args.baseline_python:
        engines["baseline"] = args.baseline_python
    results: dict[str, list[dict[str, float]]] = {name: [] for name in engines}
    print(f"load average before: {os.getloadavg()}", flush=True)
    for python in engines.values():  # one warm-up each (bytecode, page cache)
        tmp = tempfile.mkdtemp()
        try:
            measure(python, flow, tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    for _ in range(args.repeats):
        for name, python in engines.items():
            tmp = tempfile.mkdtemp()
            try:
                results[name].append(measure(python, flow, tmp))
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    print(f"load average after: {os.getloadavg()}")
    rows = [*PHASES, "wall", "ctl cpu", "tree cpu", *SUB]
    print(f"\nms, median [q1-q3] of {args.repeats} alternating runs, {args.flow}")
    print(f"{'phase':<11}" + "".join(f"{name:>24}" for name in engines))
    for row in rows:
        cells = []
        for name in engines:
            values = sorted(r.get(row, 0.0) for r in results[name])
            q = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
            cells.append(f"{statistics.median(values):8.1f} [{q[0]:6.1f}-{q[2]:6.1f}]")
        print(f"{row:<11}" + "".join(f"{c:>24}" for c in cells))


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--drive":
        drive(sys.argv[2], sys.argv[3:])
    else:
        main()

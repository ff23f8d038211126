"""Helpers of the dask runtime's tests: the cluster processes, running flows, reading them back.

The session cluster is what a user starts by hand: ``dask scheduler`` writing a scheduler file
plus two ``dask worker`` processes of one thread each, all on 127.0.0.1 with free ports. The
first worker declares ``gpu=1`` (for the ``@resources`` tests). Flows run as real ``flow run``
subprocesses; results are read back with the client.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import attrs
import psutil

from flowkernel.testing_procs import (  # noqa: F401 (subprocess_env, stop_processes: for tests)
    FlowResult,
    run_flow_process,
    stop_processes,
    subprocess_env,
)

FLOWS = Path(__file__).resolve().parent / "flows"
FORK_SERVER = "flowkernel_runtime_dask.forkserver"
#: A run that takes longer than this is hung, not slow (the machine is shared and loaded).
RUN_TIMEOUT = 240


@attrs.frozen
class Cluster:
    scheduler_file: Path
    address: str
    scheduler: subprocess.Popen = attrs.field(eq=False)
    workers: tuple[subprocess.Popen, ...] = attrs.field(eq=False)

    def worker_pids(self) -> dict[int, int]:
        """Worker process pid -> index of the ``dask worker`` command (nanny) that owns it."""
        pids = {}
        for i, nanny in enumerate(self.workers):
            for child in psutil.Process(nanny.pid).children():
                pids[child.pid] = i
        return pids

    def worker_of(self, pid: int) -> int:
        """The Dask worker process that ran step process ``pid`` (its parent, or the parent of
        the fork server that forked it); ``pid`` may be the step's parent too."""
        workers = self.worker_pids()
        if pid in workers:
            return pid
        for parent in psutil.Process(pid).parents():
            if parent.pid in workers:
                return parent.pid
        raise AssertionError(f"process {pid} does not run under a worker of the cluster")


def wait_for_workers(scheduler_file: Path, count: int, deadline: float) -> str:
    while not scheduler_file.exists():
        if time.monotonic() > deadline:
            raise TimeoutError("the Dask scheduler wrote no scheduler file")
        time.sleep(0.05)
    from distributed import Client

    with Client(scheduler_file=str(scheduler_file), timeout=60) as client:
        client.wait_for_workers(count, timeout=max(1.0, deadline - time.monotonic()))
    return json.loads(scheduler_file.read_text())["address"]


def flow_command(root: Path | str, command: str, flow: str | Path, *args: str) -> list[str]:
    path = Path(flow) if os.path.isabs(flow) else FLOWS / flow
    return [sys.executable, "-m", "flowkernel.cli", "--datastore-root", str(root), command,
            str(path), *args]  # fmt: skip


def run_flow(
    root: Path | str,
    flow: str | Path,
    *args: str,
    command: str = "run",
    env: dict | None = None,
    cwd: Path | None = None,
    flow_name: str | None = None,
) -> FlowResult:
    """``flow run FLOW ARGS`` (or ``resume``) in a subprocess, storing under ``root`` (a
    directory, or a URL: then ``cwd`` and ``flow_name`` are given)."""
    path = Path(flow) if os.path.isabs(flow) else FLOWS / flow
    return run_flow_process(
        root, path, *args, command=command, env=env, cwd=cwd, timeout=RUN_TIMEOUT,
        flow_name=flow_name,
    )  # fmt: skip


def on(cluster: Cluster) -> tuple[str, ...]:
    """The ``flow run`` arguments that select the session cluster."""
    return ("--runtime", "dask", "--dask-scheduler-file", str(cluster.scheduler_file))


def artifacts_by_step(run: Any, leave_out: tuple[str, ...] = ()) -> dict[str, list[str]]:
    """Every artifact and both output streams of every task, per step, in a stable order: what
    must be the same whichever runtime ran the flow (ids, timestamps and ``leave_out`` left
    out)."""
    out: dict[str, list[str]] = {}
    for step in run:
        for task in step:
            data = {a.id: a.data for a in task if not a.id.startswith("_") and
                    a.id not in leave_out}  # fmt: skip
            data["<stdout>"], data["<stderr>"] = task.stdout, task.stderr
            out.setdefault(step.id, []).append(json.dumps(data, sort_keys=True, default=repr))
    return {step: sorted(tasks) for step, tasks in out.items()}


def step_processes() -> list[psutil.Process]:
    """The ``flow step`` processes of the flows in FLOWS: fresh interpreters, and the children
    of the workers' fork servers (which have the server's command line)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "ppid"]):
        cmd = proc.info["cmdline"] or []
        if "step" in cmd and "flowkernel.cli" in cmd and str(FLOWS) in " ".join(cmd):
            found.append(proc)
        elif FORK_SERVER in cmd and str(FLOWS) in " ".join(cmd):
            try:
                if FORK_SERVER in psutil.Process(proc.info["ppid"]).cmdline():
                    found.append(proc)  # forked by the server: a step
            except psutil.Error:
                pass
    return found

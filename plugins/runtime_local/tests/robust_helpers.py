"""Helpers of the runtime robustness tests (test_robustness_*.py): real `flow` processes.

Every run gets its own datastore root and a unique ``ROBUST_TAG`` in its environment. Forked
workers and their children inherit that environment, so :func:`tagged_processes` finds every
process that belongs to a run, even one that was orphaned and re-parented.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import psutil

from flowkernel.testing_procs import (  # noqa: F401 (wait_for, descendants: for the tests)
    assert_gone,
    default_sigint,
    descendants,
    is_alive,
    wait_for,
)

HERE = Path(__file__).resolve().parent
FLOWS = HERE / "robust_flows"
FLOW_BIN = str(Path(sys.executable).parent / "flow")
#: Generous bound for one `flow` command: a hang guard (tests assert what was stopped, not how
#: fast: a shared machine can be slow).
CMD_TIMEOUT = 60.0


def flow_file(name: str) -> str:
    return str(FLOWS / name)


class Env:
    """One test's world: a datastore root, a marker directory and a process tag."""

    def __init__(self, base: Path):
        self.base = base
        self.root = base / "ds"
        self.markers = base / "markers"
        self.markers.mkdir(parents=True, exist_ok=True)
        self.tag = uuid.uuid4().hex

    def environ(self, **extra: str) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("PYTHONPATH", "PYTHONUNBUFFERED")
            and not k.startswith(("FLOWKERNEL_", "ROBUST_"))
        }
        env.update(
            FLOWKERNEL_DATASTORE_ROOT=str(self.root),
            ROBUST_MARKERS=str(self.markers),
            ROBUST_TAG=self.tag,
        )
        env.update(extra)
        return env

    def flow(
        self, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, **extra: str
    ) -> subprocess.CompletedProcess:
        """Run ``flow ARGS`` to completion; stdout/stderr captured as text."""
        return subprocess.run(
            [FLOW_BIN, *args],
            env=env or self.environ(**extra),
            cwd=cwd or self.base,
            capture_output=True,
            timeout=CMD_TIMEOUT,
            text=True,
            encoding="utf-8",
            errors="surrogateescape",
        )

    def start(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        command: tuple[str, ...] = (FLOW_BIN,),
        **extra: str,
    ) -> subprocess.Popen:
        """Start ``flow ARGS`` (``COMMAND ARGS``) in the background, in its own session.

        Output goes to files (a pipe nobody reads would fill up and block the controller);
        :func:`communicate` collects it.
        """
        n = len(list(self.base.glob("console-*.out")))
        out = open(self.base / f"console-{n}.out", "wb")  # noqa: SIM115 - closed by communicate
        err = open(self.base / f"console-{n}.err", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            [*command, *args],
            env=env or self.environ(**extra),
            cwd=self.base,
            stdout=out,
            stderr=err,
            start_new_session=True,
            preexec_fn=default_sigint,  # a test can Ctrl-C it, whatever started pytest
        )
        proc.console = (out, err)  # type: ignore[attr-defined]
        return proc

    # -- markers: what the flows in robust_flows/ leave behind ---------------------------------

    def executions(self, step: str, run_id: str | None = None) -> list[str]:
        """Marker files ``<step>.<run>.<task>.<attempt>.<pid>`` (one per executed attempt)."""
        names = [p.name for p in self.markers.iterdir() if p.name.startswith(f"{step}.")]
        if run_id is not None:
            names = [n for n in names if n.split(".")[1] == run_id]
        return names

    def marker(self, name: str) -> Path:
        return self.markers / name

    def release(self, name: str = "release") -> None:
        """Create the marker a waiting step polls for."""
        self.marker(name).write_text("go")

    # -- datastore -----------------------------------------------------------------------------

    def run_dir(self, flow: str, run_id: str) -> Path:
        return self.root / flow / run_id

    def task_dirs(self, flow: str, run_id: str, step: str) -> list[Path]:
        step_dir = self.run_dir(flow, run_id) / step
        return sorted(step_dir.iterdir()) if step_dir.is_dir() else []

    def records(self, flow: str, run_id: str, step: str) -> list[dict[str, Any]]:
        """The record of the latest attempt of each task of ``step`` that has one."""
        out = []
        for tdir in self.task_dirs(flow, run_id, step):
            recs = sorted(tdir.glob("*.record.json"), key=lambda p: int(p.name.split(".")[0]))
            if recs:
                out.append(json.loads(recs[-1].read_text()))
        return out

    def client(self) -> Any:
        """The client API pointed at this root, in the global namespace."""
        import flowkernel.client as client

        client.metadata(str(self.root))
        client.namespace(None)
        return client


def run_id_of(output: str) -> str:
    """The run id from a controller's "Workflow starting (run-id N):" line."""
    for line in output.splitlines():
        if "Workflow starting (run-id " in line:
            return line.split("(run-id ", 1)[1].split(")", 1)[0]
    raise AssertionError(f"no run id in output:\n{output}")


def tagged_processes(tag: str) -> list[psutil.Process]:
    """Live processes (not zombies) whose environment carries ``ROBUST_TAG=tag``."""
    me = os.getpid()
    found = []
    for proc in psutil.process_iter():
        if proc.pid == me:
            continue
        try:
            if proc.environ().get("ROBUST_TAG") == tag and is_alive(proc):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def assert_all_gone(procs: Iterable[psutil.Process], tag: str, timeout: float = 15.0) -> None:
    """Every process in ``procs`` and every process tagged ``tag`` is gone within ``timeout``."""
    assert_gone(procs, timeout, also=lambda: tagged_processes(tag))


def kill_tagged(tag: str) -> None:
    """Cleanup: SIGKILL whatever still carries ``tag`` (tests assert before calling this)."""
    for proc in tagged_processes(tag):
        try:
            proc.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass


def communicate(proc: subprocess.Popen, timeout: float = CMD_TIMEOUT) -> tuple[int, str, str]:
    """Wait for a process from :meth:`Env.start`; returns ``(exit code, stdout, stderr)``."""
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise AssertionError(f"flow did not finish in {timeout}s: {console(proc)}")
    return (proc.returncode, *console(proc))


def console(proc: subprocess.Popen) -> tuple[str, str]:
    """What a process from :meth:`Env.start` printed so far (stdout, stderr)."""
    texts = []
    for fh in proc.console:  # type: ignore[attr-defined]
        fh.flush()
        texts.append(Path(fh.name).read_bytes().decode("utf-8", "surrogateescape"))
        if proc.returncode is not None:
            fh.close()
    return texts[0], texts[1]

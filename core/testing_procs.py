"""Real processes in tests: run ``flow`` in a subprocess and read the run back, wait for
processes to start or end, stop what a test started.

The kernel's and the plugins' test suites share these (runtime_local, runtime_dask, notebook,
the Runner tests). Like :mod:`flowkernel.testing`, the module imports only the standard
library at module level: psutil and the client are imported by the functions that use them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psutil

__all__ = [
    "FlowResult",
    "assert_gone",
    "default_sigint",
    "descendants",
    "is_alive",
    "point_client_at",
    "processes_mentioning",
    "run_flow_process",
    "stop_processes",
    "subprocess_env",
    "wait_for",
    "wait_until_gone",
]


# ---------------------------------------------------------------------------------------------
# flows in subprocesses
# ---------------------------------------------------------------------------------------------


def subprocess_env(*, user: str | None = "tester", **extra: str) -> dict[str, str]:
    """This process's environment without PYTHONPATH and ``FLOWKERNEL_*`` variables, with
    ``FLOWKERNEL_USER=user`` (unless ``user`` is None) and ``extra`` added."""
    env = {
        k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("FLOWKERNEL_")
    }
    if user is not None:
        env["FLOWKERNEL_USER"] = user
    env.update(extra)
    return env


def point_client_at(root: Path | str) -> None:
    """Point the client at datastore ``root``, in the global namespace."""
    from flowkernel.client import metadata, namespace

    metadata(str(root))
    namespace(None)


class FlowResult:
    """The outcome of one ``flow run`` (or ``resume``) process and a way to read the run back.

    :param returncode: the process's exit status.
    :param stdout: what it printed on stdout; ``stderr`` likewise.
    :param root: the datastore root (a directory, or a URL).
    :param flow_name: the flow's name (None when no run was recorded).
    :param run_id: the run's id (None when the process recorded none).
    """

    def __init__(
        self,
        returncode: int,
        stdout: str,
        stderr: str,
        root: Path | str,
        flow_name: str | None,
        run_id: str | None,
    ) -> None:
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        self.root = root
        self.flow_name = flow_name
        self.run_id = run_id

    @property
    def output(self) -> str:
        """The exit status and both streams, for assertion messages."""
        return f"exit {self.returncode}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"

    def assert_ok(self) -> FlowResult:
        assert self.returncode == 0, self.output
        return self

    @property
    def run(self) -> Any:
        """The client ``Run`` (the client is pointed at this result's root first)."""
        from flowkernel.client import Run

        assert self.run_id is not None, "no run was recorded\n" + self.output
        point_client_at(self.root)
        return Run(f"{self.flow_name}/{self.run_id}")

    def task(self, step: str) -> Any:
        """The (single, or newest) task of ``step``."""
        return self.run[step].task

    def data(self, step: str) -> Any:
        return self.task(step).data

    def tasks(self, step: str) -> list[Any]:
        """Every task of ``step``, in launch order (oldest first)."""
        return sorted(self.run[step], key=lambda t: int(t.id))

    def __repr__(self) -> str:
        return f"FlowResult({self.flow_name}/{self.run_id}, exit {self.returncode})"


def run_flow_process(
    root: Path | str,
    flow: Path | str,
    *args: str,
    command: str = "run",
    how: str = "module",
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 120.0,
    flow_name: str | None = None,
) -> FlowResult:
    """Run ``flow COMMAND FLOW ARGS`` in a subprocess storing under ``root``; wait for it.

    :param root: the datastore root: a directory, or a URL (then give ``cwd``, and
        ``flow_name`` to read the run back).
    :param command: ``run`` or ``resume``.
    :param how: ``module`` = ``python -m flowkernel.cli``; ``flow`` = the ``flow`` console
        script; ``script`` = ``python FLOW ...`` (the flow file's own ``__main__``).
    :param env: variables added to :func:`subprocess_env`.
    :param cwd: the working directory [default: the root's parent directory]; the run id file
        goes beside a local root, else here.
    :param timeout: seconds after which the process is killed (a hung run, not a slow one).
    :returns: the result; its run id comes from ``--run-id-file``, its flow name from the root.
    """
    local = "://" not in str(root)
    cwd = Path(cwd) if cwd is not None else Path(root).parent
    id_file = (Path(root).parent if local else cwd) / f"run-id-{os.urandom(6).hex()}"
    tail = [str(flow), *args, "--run-id-file", str(id_file)]
    if how == "module":
        cmd = [sys.executable, "-m", "flowkernel.cli", "--datastore-root", str(root), command]
    elif how == "flow":
        exe = str(Path(sys.executable).parent / "flow")
        cmd = [exe, "--datastore-root", str(root), command]
    elif how == "script":
        cmd = [sys.executable, str(flow), "--datastore-root", str(root), command]
        tail = tail[1:]
    else:
        raise ValueError(f"how={how!r}: module, flow or script")
    proc = subprocess.run(
        [*cmd, *tail],
        capture_output=True,
        text=True,
        env=subprocess_env(**(env or {})),
        cwd=cwd,
        timeout=timeout,
    )
    run_id = id_file.read_text().strip() if id_file.exists() else None
    if flow_name is None and run_id and local:
        flows = Path(root).iterdir() if Path(root).is_dir() else ()
        flow_name = next((p.name for p in flows if (p / run_id).is_dir()), None)
    return FlowResult(proc.returncode, proc.stdout, proc.stderr, root, flow_name, run_id)


# ---------------------------------------------------------------------------------------------
# waiting for processes
# ---------------------------------------------------------------------------------------------


def default_sigint() -> None:
    """``preexec_fn`` of a child a test interrupts with SIGINT, as Ctrl-C in a terminal would.

    A shell starts a background job (``python3 dev.py test &``) with SIGINT ignored, every
    child inherits that, and Python then keeps it ignored: the child would never see the
    test's Ctrl-C and run on until a timeout. This puts the default disposition back.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_for(
    predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.02, what: str = ""
) -> Any:
    """Poll ``predicate`` until it returns something truthy, and return that; fail with an
    AssertionError naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


def is_alive(proc: psutil.Process) -> bool:
    """The process runs (a zombie does not)."""
    import psutil

    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def descendants(pid: int) -> list[psutil.Process]:
    """Every process below ``pid`` (none if it is gone)."""
    import psutil

    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def processes_mentioning(text: str) -> list[psutil.Process]:
    """Live processes (not this one, not zombies) with ``text`` in a command-line argument:
    the processes of flows run from files under a test's own directory."""
    import psutil

    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        try:
            if proc.info["status"] == psutil.STATUS_ZOMBIE or proc.pid == os.getpid():
                continue
            if any(text in part for part in proc.info["cmdline"] or ()):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def wait_until_gone(
    procs: Iterable[psutil.Process] = (),
    timeout: float = 15.0,
    also: Callable[[], list[psutil.Process]] | None = None,
) -> list[psutil.Process]:
    """Wait until every process of ``procs``, and every one ``also()`` finds, has ended;
    returns those still alive after ``timeout`` seconds (empty: all gone)."""
    procs = list(procs)

    def survivors() -> list[psutil.Process]:
        left = [p for p in procs if is_alive(p)]
        return left + [p for p in (also() if also else []) if p not in left]

    deadline = time.monotonic() + timeout
    left = survivors()
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = survivors()
    return left


def assert_gone(
    procs: Iterable[psutil.Process] = (),
    timeout: float = 15.0,
    also: Callable[[], list[psutil.Process]] | None = None,
) -> None:
    """:func:`wait_until_gone`, failing the test with the survivors' command lines; the
    survivors are SIGKILLed first, so they do not leak into the next test."""
    import psutil

    left = wait_until_gone(procs, timeout, also)
    if not left:
        return
    described = [(p.pid, _cmdline(p)) for p in left]
    for proc in left:
        try:
            proc.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    raise AssertionError(f"processes survived: {described}")


def _cmdline(proc: psutil.Process) -> str:
    import psutil

    try:
        return " ".join(proc.cmdline())
    except psutil.Error:
        return "?"


def stop_processes(procs: Iterable[subprocess.Popen], grace: float = 20.0) -> None:
    """Stop what a test (or fixture) started: SIGTERM each process, then SIGKILL whatever of
    it (children included) has not exited ``grace`` seconds later."""
    procs = list(procs)
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    deadline = time.monotonic() + grace
    for proc in procs:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            for child in descendants(proc.pid):
                try:
                    child.kill()
                except OSError:  # psutil.NoSuchProcess: it ended meanwhile
                    pass
            proc.kill()
            proc.wait()

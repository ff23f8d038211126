"""A warm fork server per Dask worker: each task attempt is a ``fork()`` of a process that has
flowkernel, the kernel's plugins and the flow's imports loaded, instead of a fresh interpreter.

The worker side (:class:`ForkServer`, :func:`server_for`) starts the server with the worker's
long-lived spawner thread, so ``PR_SET_PDEATHSIG`` ties it to the worker process; the server
is in its own session (a Ctrl-C on the worker's terminal is not for it). For each attempt the
worker sends the ``flow step`` command line, its environment and working directory plus the
write ends of two pipes (``SCM_RIGHTS`` over a ``SOCK_SEQPACKET`` socket); the server forks a
child that, like a ``flow step`` process, leads its own session and process group, gets
``PR_SET_PDEATHSIG`` (it dies with the server, which dies with the worker) and runs the ``flow``
command in-process with its stdout/stderr on those pipes. When a child exits, the server
SIGKILLs what is left of its process group, reaps it and reports its exit code; the worker
signals the group itself to stop an attempt (a child leads its group, so ``killpg`` reaches it
from the worker).

The server imports the flow file once, as every ``flow step`` of the run would: with the
run's configs registered, its ``--with`` decorators attached, in the run's working directory,
and builds its graph; each child's ``flow step`` then finds the module imported (as a task
forked by the local runtime finds it in the controller) instead of importing and parsing the
file again. If that import fails, the module is forgotten and each child imports the file
itself and reports why. A package's flow is loaded once the first attempt has extracted the
package into the local cache, so the server itself never talks to the datastore. A server is
made for one environment and one run of a flow file (or one package, whose key covers its
content): another run gets its own (a file edited between runs is imported anew), and idle
servers made for anything else are closed.

If a server cannot fork safely (the flow's imports started threads) it refuses, and the attempt
runs as a fresh interpreter, as it does where there is no fork server (not Linux, or
``FLOWKERNEL_DASK_FORK_SERVER=0``).
"""

from __future__ import annotations

import atexit
import hashlib
import itertools
import json
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
from typing import Any

import attrs

#: Largest request or reply (an attempt's command line and environment).
_MAX_MESSAGE = 1 << 20


def enabled(env: dict[str, str]) -> bool:
    """Whether an attempt with environment ``env`` runs from a fork server (the worker's own
    environment, or the controller's ``FLOWKERNEL_*`` ones, may say no)."""
    if not sys.platform.startswith("linux") or not hasattr(socket, "send_fds"):
        return False
    return env.get("FLOWKERNEL_DASK_FORK_SERVER", "1") not in ("0", "false", "no")


@attrs.frozen
class Preload:
    """The flow a server loads the imports of: a flow file, or a code package's flow."""

    flow_file: str | None = None
    package: str | None = None  #: a package key; its flow is found in the local cache
    #: the run a flow file's server is for: the modules beside the file may change between
    #: runs, and the server keeps them imported (a package's content is its key)
    run: str | None = None
    #: the run's configs as ``flow step`` gets them (``--config-value NAME JSON``) and its
    #: ``--with`` decorators: the flow is imported with them, once
    configs: tuple[tuple[str, str], ...] = ()
    decospecs: tuple[str, ...] = ()
    cwd: str | None = None  #: the steps' working directory (the flow is imported there)

    def to_arg(self) -> str:
        return json.dumps(attrs.asdict(self))

    @classmethod
    def from_arg(cls, text: str) -> Preload:
        fields = json.loads(text)
        fields["configs"] = tuple(tuple(pair) for pair in fields["configs"])
        fields["decospecs"] = tuple(fields["decospecs"])
        return cls(**fields)


@attrs.frozen
class StepCall:
    """A ``flow step`` command line as data (:func:`flowkernel.engine.runs.run_step`'s
    arguments and the configs the command line registers)."""

    flow_file: str  #: ``-``: the package's own flow file
    spec: Any  #: the attempt's :class:`~flowkernel.engine.executor.TaskSpec`
    decospecs: tuple[str, ...] = ()
    package: str | None = None
    configs: tuple[tuple[str, str], ...] = ()


class ForkedChild:
    """An attempt forked by a server: the parts of ``subprocess.Popen`` the supervisor uses."""

    def __init__(self, pid: int, out_fd: int, err_fd: int):
        self.pid = pid
        self.stdout = open(out_fd, "rb", buffering=0)  # noqa: SIM115 (the relay closes it)
        self.stderr = open(err_fd, "rb", buffering=0)  # noqa: SIM115
        self.returncode: int | None = None
        self._exited = threading.Event()

    def _set_exit(self, code: int) -> None:
        self.returncode = code
        self._exited.set()

    def exited(self, timeout: float) -> bool:
        """Whether the child has exited (its group killed and reaped by the server)."""
        return self._exited.wait(timeout)

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if not self._exited.wait(timeout):
            raise subprocess.TimeoutExpired("flow step", timeout or 0)
        assert self.returncode is not None
        return self.returncode


class Refused(Exception):
    """The server cannot fork this attempt: run it as a fresh interpreter instead."""


class ForkServer:
    """The worker's end of one fork server."""

    def __init__(self, env: dict[str, str], preload: Preload, spawn: Any):
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.sock = parent
        self.lock = threading.Lock()
        self.pending: dict[int, list] = {}  #: request id -> [Event, reply]
        self.children: dict[int, ForkedChild] = {}
        self.ids = itertools.count()
        self.alive = True
        self.refused: str | None = None
        argv = [sys.executable, "-m", "flowkernel_runtime_dask.forkserver", str(child.fileno()),
                preload.to_arg()]  # fmt: skip
        try:
            self.proc = spawn(argv, env, None, pass_fds=(child.fileno(),))
        finally:
            child.close()
        threading.Thread(target=self._read, name="flowkernel-forkserver", daemon=True).start()

    @property
    def idle(self) -> bool:
        with self.lock:
            return not self.pending and not self.children

    def start(
        self, argv: list[str], env: dict[str, str], cwd: str | None, step: StepCall | None = None
    ) -> ForkedChild:
        """Fork ``argv`` (a ``python -m flowkernel.cli ...`` command line) in the server; with
        ``step`` (the same ``flow step`` as structured data), the child runs that directly
        instead of parsing the command line.

        :raises Refused: the server cannot fork it (gone, or unsafe to fork).
        """
        if argv[1:3] != ["-m", "flowkernel.cli"]:
            raise Refused("not a flow command")
        if self.refused or not self.alive:
            raise Refused(self.refused or "the fork server is gone")
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            with self.lock:
                rid = next(self.ids)
                slot: list = [threading.Event(), None]
                self.pending[rid] = slot
            request = pickle.dumps(
                {"id": rid, "args": argv[3:], "env": env, "cwd": cwd, "step": step}
            )
            try:
                socket.send_fds(self.sock, [request], [out_w, err_w])
            except OSError as exc:
                self._gone()
                raise Refused(f"the fork server is gone ({exc})") from None
        finally:
            os.close(out_w)
            os.close(err_w)
        slot[0].wait()
        reply = slot[1] or {"refused": "the fork server is gone"}
        if "pid" not in reply:
            os.close(out_r)
            os.close(err_r)
            self.refused = self.refused or reply.get("refused")
            raise Refused(reply.get("refused", "no reply"))
        return self._registered(reply["pid"], out_r, err_r)

    def _registered(self, pid: int, out_r: int, err_r: int) -> ForkedChild:
        child = ForkedChild(pid, out_r, err_r)
        with self.lock:
            early = self.children.pop(pid, None)  # its exit was read before its start reply
            if isinstance(early, int):
                child._set_exit(early)
            else:
                self.children[pid] = child
        return child

    def _read(self) -> None:
        while True:
            try:
                data = self.sock.recv(_MAX_MESSAGE)
            except OSError:
                data = b""
            if not data:
                self._gone()
                try:  # it is exiting (its socket closed): reap it, leave no zombie
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    pass
                return
            msg = pickle.loads(data)
            with self.lock:
                if "exited" in msg:
                    child = self.children.pop(msg["exited"], None)
                    if child is None:  # not registered yet: keep the code for it
                        self.children[msg["exited"]] = msg["code"]
                    else:
                        child._set_exit(msg["code"])
                    continue
                slot = self.pending.pop(msg["id"], None)
            if slot is not None:
                slot[1] = msg
                slot[0].set()

    def _gone(self) -> None:
        """The server exited: its children died with it (``PR_SET_PDEATHSIG``)."""
        with self.lock:
            self.alive = False
            pending, self.pending = self.pending, {}
            children, self.children = self.children, {}
        for slot in pending.values():
            slot[0].set()
        for child in children.values():
            if isinstance(child, ForkedChild):
                child._set_exit(-signal.SIGKILL)

    def close(self) -> None:
        """Let the server go: it sees its socket close and exits."""
        self.alive = False
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


_SERVERS: dict[str, ForkServer] = {}
_SERVERS_LOCK = threading.Lock()


def server_for(env: dict[str, str], preload: Preload, spawn: Any) -> ForkServer:
    """This worker's fork server for ``env`` and ``preload`` (started on first use); idle
    servers made for anything else (an earlier run) are closed."""
    key = hashlib.sha256(pickle.dumps((sorted(env.items()), preload, sys.executable))).hexdigest()
    with _SERVERS_LOCK:
        server = _SERVERS.get(key)
        if server is not None and not server.alive:
            del _SERVERS[key]
            server = None
        stale = [k for k, s in _SERVERS.items() if k != key and (s.idle or not s.alive)]
        closing = [_SERVERS.pop(k) for k in stale]
        if server is None:
            if not _SERVERS and not closing:  # the first: closed when the worker exits
                _close_at_exit()
            server = _SERVERS[key] = ForkServer(env, preload, spawn)
    for old in closing:
        old.close()
    return server


def _close_at_exit() -> None:
    global _AT_EXIT
    if not _AT_EXIT:
        atexit.register(close_all)
        _AT_EXIT = True


_AT_EXIT = False


def close_all() -> None:
    """Close every fork server of this worker (at the worker process's exit): each one
    stops its children and exits, and is reaped here (its CPU time, and its children's,
    counts in the worker's)."""
    with _SERVERS_LOCK:
        servers = list(_SERVERS.values())
        _SERVERS.clear()
    for server in servers:
        server.close()


# -- the server process ----------------------------------------------------------------------


#: What every ``flow step`` imports; the server imports them once, its children find them loaded.
_WARM_MODULES = (
    "flowkernel.cli.main",
    "flowkernel.cli.run_cmds",
    "flowkernel.engine.executor",
    "flowkernel.engine.packages",
    "flowkernel.engine.runs",
    "flowkernel.flow.decorators",
)


class _Server:
    def __init__(self, sock: socket.socket, preload: Preload):
        from flowkernel.engine import forkchild

        self.sock, self.preload = sock, preload
        self.pid = os.getpid()
        forkchild.load_libc()
        #: the children's sys.stdout/sys.stderr, made once here (nothing writes to them here)
        self.streams = forkchild.line_streams()
        self.children: set[int] = set()
        self.loaded = False
        self.unsafe: str | None = None
        self.wake_r, wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes the loop through wake_w
        self.wake_w = wake_w

    def warm(self) -> None:
        """Import what every ``flow step`` imports, and the kernel with its plugins."""
        import importlib

        for name in _WARM_MODULES:
            importlib.import_module(name)
        from flowkernel.cli.context import get_kernel

        get_kernel()
        self._load_flow()

    def _flow_path(self) -> str | None:
        if self.preload.package:
            from flowkernel.engine.packages import MANIFEST, cache_dir, parse_key

            _, sha = parse_key(self.preload.package)
            folder = os.path.join(cache_dir(), sha)
            try:
                with open(os.path.join(folder, MANIFEST)) as fh:
                    return os.path.join(folder, json.load(fh)["flow_file"])
            except (OSError, ValueError, KeyError):
                return None  # not extracted yet: the first attempt does it
        return self.preload.flow_file or None

    def _load_flow(self) -> None:
        """Import the flow (once its file is here) as its ``flow step`` children would, then
        check that forking is still safe: a library that started a thread makes every fork a
        gamble."""
        if self.loaded:
            return
        path = self._flow_path()
        if path is None or not os.path.isfile(path):
            if not self.preload.package:
                self.loaded = True  # a flow file that is not here: nothing to load
            return
        self.loaded = True
        from flowkernel.cli.context import get_kernel
        from flowkernel.flow.config import set_sources
        from flowkernel.flow.decorators import attach_decospecs
        from flowkernel.flow.loader import load_flow, module_name_for

        self._enter(self.preload.cwd)
        try:  # what `flow step` does before it runs the task (the children then reuse it)
            set_sources({}, dict(self.preload.configs))
            flow_cls = load_flow(path)
            attach_decospecs(flow_cls, self.preload.decospecs)
            get_kernel().build_graph(flow_cls)
        except BaseException:  # each attempt imports it again and reports why
            sys.modules.pop(module_name_for(path), None)
        threads = len(os.listdir("/proc/self/task")) if os.path.isdir("/proc/self/task") else 1
        if threads > 1:
            self.unsafe = f"the flow's imports started {threads - 1} thread(s)"
        import gc

        gc.freeze()  # objects of the warm server are never collected in the children

    @staticmethod
    def _enter(cwd: str | None) -> None:
        """Work in ``cwd`` (if it exists here), with it first on ``sys.path`` as for
        ``python -m`` started there (the flow's imports resolve as in the step)."""
        if not cwd or not os.path.isdir(cwd):
            return
        os.chdir(cwd)
        if sys.path and sys.path[0] == _START_CWD:
            sys.path[0] = os.getcwd()

    def serve(self) -> None:
        import selectors

        sel = selectors.DefaultSelector()
        sel.register(self.sock, selectors.EVENT_READ)
        sel.register(self.wake_r, selectors.EVENT_READ)
        self.selector = sel
        while True:
            self._reap()
            for key, _ in sel.select():
                if key.fileobj == self.wake_r:
                    try:
                        while os.read(self.wake_r, 512):
                            pass
                    except BlockingIOError:
                        pass
                    continue
                try:
                    data, fds, _, _ = socket.recv_fds(self.sock, _MAX_MESSAGE, 2)
                except OSError:
                    data, fds = b"", []
                if not data:
                    self._shutdown()
                    return
                self._handle(pickle.loads(data), fds)

    def _handle(self, request: dict[str, Any], fds: list[int]) -> None:
        if len(fds) != 2:
            for fd in fds:
                os.close(fd)
            self._reply({"id": request["id"], "refused": "no pipes came with the request"})
            return
        self._load_flow()
        if self.unsafe:
            for fd in fds:
                os.close(fd)
            self._reply({"id": request["id"], "refused": self.unsafe})
            return
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            self._child(request, fds)
        for fd in fds:
            os.close(fd)
        self.children.add(pid)
        self._reply({"id": request["id"], "pid": pid})

    def _reply(self, msg: dict[str, Any]) -> None:
        try:
            self.sock.send(pickle.dumps(msg))
        except OSError:  # the worker is gone: the loop sees the socket close
            pass

    def _reap(self) -> None:
        """Report every child that exited, after killing what it left in its group."""
        while self.children:
            try:
                info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                return
            if info is None:
                return
            pid = info.si_pid
            _killpg(pid, signal.SIGKILL)  # before the reap: its zombie keeps the group id
            _, status = os.waitpid(pid, 0)
            self.children.discard(pid)
            self._reply({"exited": pid, "code": os.waitstatus_to_exitcode(status)})

    def _shutdown(self) -> None:
        for pid in self.children:
            _killpg(pid, signal.SIGKILL)

    def _child(self, request: dict[str, Any], fds: list[int]) -> None:  # pragma: no cover
        """A forked attempt (never returns): a session of its own, death with the server, its
        stdout/stderr on the request's pipes (:mod:`flowkernel.engine.forkchild`), then its
        step (or ``flow ARGS``) in the request's working directory and environment."""
        from flowkernel.engine import forkchild

        def body() -> int:
            signal.set_wakeup_fd(-1)  # the server's: closed next
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            self.selector.close()
            self.sock.close()
            os.close(self.wake_r)
            os.close(self.wake_w)
            cwd = request["cwd"]
            if cwd:
                os.chdir(cwd)
            if sys.path and sys.path[0] == _START_CWD:  # `python -m` puts the cwd first
                sys.path[0] = os.getcwd()  # (the server did it already if it entered the cwd)
            os.environ.clear()
            os.environ.update(request["env"])
            sys.argv = ["flow", *request["args"]]
            step = request.get("step")
            return _run_step(step) if step else _run_flow_command(request["args"])

        forkchild.run(body, fds[0], fds[1], parent=self.pid, group="session", streams=self.streams)


def _run_step(call: StepCall) -> int:
    """The ``flow step`` of ``call`` in this process, without parsing its command line (the
    parse alone faults in some 600 pages of the warm server per attempt); its exit code,
    errors reported as ``flow step`` reports them."""
    from flowkernel.cli.context import get_kernel
    from flowkernel.engine.runs import run_step
    from flowkernel.errors import FlowkernelError, UsageError
    from flowkernel.flow.config import set_sources

    try:
        set_sources({}, dict(call.configs))
        return run_step(get_kernel(), call.flow_file, call.spec, call.decospecs, call.package)
    except UsageError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    except FlowkernelError as exc:
        print(f"{exc.headline}: {exc}", file=sys.stderr)
        return 1


def _run_flow_command(args: list[str]) -> int:
    """``flow ARGS`` in this process (its ``SystemExit`` is the child's exit code)."""
    from flowkernel.cli.main import main

    main(args)
    return 0


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


_START_CWD = os.getcwd()


def main() -> None:
    sock = socket.socket(fileno=int(sys.argv[1]))
    preload = Preload.from_arg(sys.argv[2])
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    server = _Server(sock, preload)
    server.warm()
    server.serve()


if __name__ == "__main__":
    main()

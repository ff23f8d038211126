"""The local runtime's controller: a single-threaded loop that starts task attempts as
processes, watches them, feeds their output to the log sinks, and stops them when told.

What to run, what a finished attempt means, retries and fail-fast are the kernel's
:class:`~flowkernel.dispatch.Dispatcher` (the same for every runtime); this module keeps only
processes, pipes and polling. Each attempt runs in its own process: forked by the fork server
(:mod:`~flowkernel_runtime_local.forkserver`, a fork of this warm controller made before the
first task, so that the controller itself takes no copy-on-write faults per task), forked from
this controller where there is no fork server, or, with ``--isolation spawn``, a fresh
interpreter running ``flow step``. No threads are started, so forking is safe.
"""

from __future__ import annotations

import itertools
import operator
import os
import pickle
import signal
import struct
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from flowkernel.engine.dispatch import Attempt, Backend, Dispatcher, Interrupted
from flowkernel.engine.executor import TaskSpec, preload_flow, preload_input, run_task
from flowkernel.engine.logs import abnormal_end_line
from flowkernel.engine.policy import describe_exit
from flowkernel.engine.progress import Progress, progress_for
from flowkernel.engine.runs import step_command
from flowkernel.specs import LogLine, RunResult
from flowkernel.storage import LocalBackend
from flowkernel.unbounded_foreach import UBF_CONTROL
from flowkernel_runtime_local import pool, workers
from flowkernel_runtime_local.commit import Committer
from flowkernel_runtime_local.forkserver import (
    MAX_REQUEST,
    ForkServer,
    ServerGone,
    lookahead_wanted,
)
from flowkernel_runtime_local.pool import PoolProcess
from flowkernel_runtime_local.workers import Worker

if TYPE_CHECKING:
    from flowkernel.engine.records import TaskRecord
    from flowkernel.engine.runs import RunContext
    from flowkernel.kernel import Kernel

#: A launch request to the fork server: the id of the task's input records there (0: none,
#: the task reads them from the datastore), the length of their pickle in this request (0:
#: sent with an earlier request), the task's foreach index (-1: none); then that pickle, then
#: the pickle of the task's TaskSpec as the tuple of its fields (:data:`_SPEC_FIELDS`).
_REQUEST = struct.Struct("<QIq")
#: A TaskSpec's fields in ``__init__`` order. The request carries the tuple: pickling the attrs
#: instance itself goes through its Python ``__getstate__`` (measured in the controller:
#: ~44 -> ~24 us per task for the whole of :meth:`_Controller._encode_request`).
_SPEC_FIELDS = operator.attrgetter(*(field.name for field in attrs.fields(TaskSpec)))
#: Extra seconds a task gets past its @timeout (the in-task alarm fires first) before the
#: controller kills its process tree.
TIMEOUT_GRACE = 5.0
#: Seconds a failing or interrupted run gives its running tasks between SIGTERM and SIGKILL
#: (a second Ctrl-C / SIGTERM cuts it short).
STOP_GRACE = 5.0
_READ_SIZE = 1 << 16
#: Reads of one pipe per poll round (1 MiB): a chatty task cannot starve the loop.
_READS_PER_ROUND = 16
#: A line longer than this (bytes) reaches the sinks in pieces of this size.
MAX_LINE = 1 << 20
#: The last line of the stderr log of an attempt lost with the fork server before its start
#: was read (without lookahead; with it, such an attempt is withdrawn: no log at all).
NEVER_STARTED_LOST = "The task never started: the fork server died before it reported its start."


class LocalRuntime:
    """The ``local`` runtime: ``run(ctx)`` executes a prepared run and returns a RunResult."""

    def __init__(self, kernel: Kernel):
        self.kernel = kernel

    def run(self, ctx: RunContext) -> RunResult:
        return _Controller(self.kernel, ctx).execute()


class _Controller(Backend):
    """Processes for one run; the :class:`Dispatcher` decides what they run (its Backend).

    **Lookahead** (``--isolation fork`` with a fork server, unless
    ``FLOWKERNEL_FORK_LOOKAHEAD=0``): :meth:`lookahead` is ``--max-workers``, so the
    dispatcher launches up to twice ``--max-workers`` attempts; the server runs at most
    ``--max-workers`` of them and starts a queued one the moment it reaps a task, before the
    controller has heard of that exit (the server's queue: see
    :mod:`~flowkernel_runtime_local.forkserver`). What that means here:

    * a launched attempt is not running yet: its ``started_at``, its @timeout deadline, its
      "running" count in the progress display (:meth:`reports_starts`; and its ``.started``
      marker, unless it is the task directory, made at launch) and the "Task is starting"
      line come with the server's report of its start; that line, and the lines the task
      printed, are told after the exits the server reported before that start (the task it
      replaced has "finished" first);
    * a queued attempt that is stopped (fail-fast, Ctrl-C) is dropped by the server and
      reported as ended by the signal without having run: the dispatcher withdraws it, and it
      leaves no trace (no task directory, record, log or hook call), as if never launched;
      no new task starts after a final failure, because the server holds the slot of a task
      that did not finish cleanly (an exit code other than 0, or 0 without the executor's
      return, see :data:`~flowkernel_runtime_local.forkserver.DONE`) until the controller
      has handled its exit (:meth:`ForkServer.release`);
    * a retry is launched *first* in the server's queue, so it takes the next free slot, as
      without lookahead;
    * a ``@parallel`` gang's nodes are launched *now*, never behind queued attempts (the
      dispatcher applies no lookahead around a gang, so none are queued then anyway);
    * if the server dies, its running attempts are lost (they run again as new attempts) and
      its queued ones are withdrawn and launched again as the same attempt; from then on the
      controller forks tasks itself and keeps the launches beyond ``--max-workers`` running
      tasks in its own backlog (a retry first), started when one ends.
    """

    def __init__(self, kernel: Kernel, ctx: RunContext):
        self.kernel = kernel
        self.ctx = ctx
        opts = ctx.options
        self.quiet = opts.quiet
        isolation = opts.extra.get("isolation") or ("fork" if hasattr(os, "fork") else "spawn")
        self.isolation = isolation
        self.dispatcher = Dispatcher(kernel, ctx, self, runtime="local")
        self.info = self.dispatcher.info
        #: running attempts by key (a number per attempt, from 1)
        self.workers: dict[int, Worker] = {}
        self._keys = itertools.count(1)
        self.by_fd: dict[int, Worker] = {}
        self.pid = os.getpid()
        #: SIGINT/SIGTERM received so far; the handler only counts, the loop acts on it
        self.signals = 0
        #: of those, the ones that started the run's interruption: any later one is "hurry up"
        self.signals_acted_on = 0
        #: the console (stdout) is gone (`| head`, a Runner caller that exited): stop writing
        self.console_lost = False
        #: the group commit of forked attempts' records (None: attempts fsync their own)
        self.committer: Committer | None = None
        #: ``--isolation pool``: the long-lived task processes, idle or running one attempt
        self.pool: list[PoolProcess] = []
        #: ``--isolation fork``: the process that forks the tasks (None: this one does)
        self.server: ForkServer | None = None
        #: what the fork server reported, in its order, handled by :meth:`_served_exits`:
        #: ``(worker, code, held)`` for an exit (``held``: its slot waits for a release),
        #: ``(worker, None, False)`` for a start to announce
        self.exits: list[tuple[Worker, int | None, bool]] = []
        #: the fork server's socket closed; :meth:`_served_exits` handles it
        self.server_lost = False
        #: the poller's own descriptor, if it has one a fork inherits (closed in forked tasks)
        self.poller_fd: int | None = None
        self.max_workers = max(1, opts.max_workers)
        #: attempts launched past ``--max-workers`` (:meth:`lookahead`; 0: none)
        self.ahead = 0
        #: launched attempts waiting here for a slot (lookahead once the fork server is gone)
        self.backlog: deque[Worker] = deque()
        #: the input records of the last request sent to the fork server, and their id there
        #: (0: not sent, too large: the task reads them from the datastore)
        self._last_inputs: tuple[tuple[Any, ...], int] | None = None
        self._input_ids = itertools.count(1)
        #: (in the fork server) input records decoded, by their id
        self._decoded: dict[int, Any] = {}
        #: (in the fork server) the input records' id and the foreach indexes it preloaded
        self._preloaded: tuple[int, range] = (0, range(0))

    @property
    def progress(self) -> Progress:
        """The dispatcher's counts (a live display on a terminal, set in :meth:`execute`)."""
        return self.dispatcher.progress

    # -- messages ------------------------------------------------------------------------------

    def say(
        self,
        text: str,
        task: Attempt | Worker | None = None,
        force: bool = False,
        err: bool = False,
    ) -> None:
        """An engine message on the console (never in a task's own logs); ``err``: on stderr."""
        if (self.quiet or self.progress.live) and not force:
            return  # the live display shows task starts and ends as counts
        if self.console_lost:
            return
        where = f"[{self.ctx.run_id}/{task.step}/{task.task_id}] " if task else ""
        stream = sys.stderr if err else sys.stdout
        try:
            stream.write(f"{time.strftime('%H:%M:%S')} {where}{text}\n")
            stream.flush()
        except (BrokenPipeError, ValueError):
            if not err:
                self._lose_console()

    def _lose_console(self) -> None:
        """Nobody reads the console any more: the run goes on, recorded and logged to files."""
        self.console_lost = True
        workers.detach_stdout()
        for sink in list(getattr(self, "sinks", ())):
            if getattr(sink, "console", False):
                self.sinks.remove(sink)

    def _on_signal(self, _signum: int, _frame: Any) -> None:
        # Only count: raising here could land anywhere (inside fork's at-fork handlers, where
        # it is swallowed, or between a fork and the worker's registration). The loop stops
        # the run; a further signal while it stops makes it SIGKILL at once.
        self.signals += 1

    # -- main loop -----------------------------------------------------------------------------

    def execute(self) -> RunResult:
        workers.load_libc()
        if self.isolation != "spawn" and isinstance(self.ctx.store.backend, LocalBackend):
            # forked before the guardian and any task, so that none holds its pipe open
            self.committer = Committer().start()
        self.guardian = workers.Guardian.start()
        if self.isolation == "fork":  # after the committer and the guardian: see its docstring
            self.server = ForkServer.start(self._run_request, self.pid, self._prepare_request)
            if self.server is not None and lookahead_wanted():
                self.ahead = self.max_workers
                self.server.limit(self.max_workers)
        self.poller = self.kernel.make_poller()
        fileno = getattr(self.poller, "fileno", None)  # (see flowkernel.engine.poller)
        self.poller_fd = fileno() if fileno is not None else None
        if self.poller_fd is not None:  # no task or pool process forked from here holds it
            workers.private_fds.add(self.poller_fd)
        if self.committer is not None:
            self.committer.watch(self.poller)
        if self.server is not None:
            self.poller.register(self.server.fd, self.server)
        # before the sinks: on a terminal, the console sink then writes above the live display
        self.dispatcher.progress = progress_for(
            self.quiet, f"{self.info.flow_name}/{self.ctx.run_id}"
        )
        self.sinks = list(self.kernel.log_sinks(self.info))
        old_handlers = {
            sig: signal.signal(sig, self._on_signal)
            for sig in (signal.SIGTERM, signal.SIGINT)
            if signal.getsignal(sig) is not signal.SIG_IGN
        }
        workers.reap_intermediates()  # the helpers' double forks: exited meanwhile
        try:
            return self.dispatcher.run()
        finally:
            self.guardian.close()
            for sig, handler in old_handlers.items():
                signal.signal(sig, handler)

    def wait(self) -> None:
        """Read the tasks' output for a moment; report the attempts that ended and the
        groups whose records became durable."""
        self._check_signals()
        if not self.workers and not self.dispatcher.committing:
            return
        self._handle(self.poller.poll(self._poll_timeout()))
        self._enforce_timeouts()

    def _handle(self, keys: list[Any]) -> None:
        """Act on what the poller reported ready, then on the attempts that ended."""
        if self.server is not None and self.server in keys:
            self._server_events()  # first: a task's output may need its pid
        for key in keys:
            if key is self.committer:
                key.read_acks()
            elif isinstance(key, PoolProcess):
                self._pool_result(key)
            elif isinstance(key, Worker):
                self._read(key)
        self._served_exits()
        self._reap()

    def commit(self, records: Sequence[TaskRecord], then: Callable[[], None]) -> None:
        """Group commit: forked attempts write their records without fsync; the committer
        makes them durable in batches and ``then`` (queue the successors) runs once it has
        (see :mod:`flowkernel_runtime_local.commit` for the contract)."""
        if self.committer is None:
            then()
            return
        store = self.ctx.store
        paths = [store.record_path(r.run_id, r.step, r.task_id, r.attempt) for r in records]
        self.committer.submit(paths, then)

    def close(self) -> None:
        """The run is over: stop the pool and the fork server, finish the group commit, close
        the log sinks and the poller."""
        for proc in list(self.pool):
            self._retire(proc)
        if self.server is not None:
            self.poller.unregister(self.server.fd)
            self.server.close()
            self.server = None
        if self.committer is not None:
            self.committer.close()
        for sink in self.sinks:
            try:
                sink.close()
            except Exception as exc:
                self.say(f"log sink {type(sink).__name__} failed to close: {exc}", force=True)
        if self.poller_fd is not None:
            workers.private_fds.discard(self.poller_fd)
        self.poller.close()

    def _check_signals(self) -> None:
        if self.signals and self.dispatcher.failure != "interrupted":
            self.signals_acted_on = self.signals
            raise Interrupted()

    def _poll_timeout(self) -> float:
        deadlines = [w.deadline for w in self.workers.values() if w.deadline is not None]
        # a worker whose pipes are closed sends no more events: check its exit often (the
        # fork server reports the exits of the workers it forked; the backlog has no process)
        polled = (w for w in self.workers.values() if not w.served and not w.backlogged)
        timeout = 0.01 if any(not w.fds for w in polled) else 0.2
        if deadlines:
            timeout = min(timeout, max(0.0, min(deadlines) - time.time()))
        return timeout

    # -- the dispatcher's backend --------------------------------------------------------------

    def lookahead(self) -> int:
        """``--max-workers`` with a fork server (it queues what is launched beyond that and
        starts it when a task exits; see the class docstring), else 0."""
        return self.ahead

    def reports_starts(self) -> bool:
        """With lookahead: a launched attempt may wait in the fork server's queue, and
        :meth:`_announce` tells the dispatcher when it really starts."""
        return self.ahead > 0

    def launch(self, attempt: Attempt) -> None:
        """Have one attempt's process started: by the fork server (now, or from its queue), or
        here (fork, or spawn ``flow step``; or later, from the backlog)."""
        spec = attempt.spec
        key = next(self._keys)
        worker = Worker(
            key=key,
            pid=None,
            step=spec.step,
            task_id=spec.task_id,
            attempt=spec.attempt,
            job=attempt,
            fds={},
            started_at=time.time(),  # until it starts (kept if it never does)
        )
        served = self._serving and self._serve(key, attempt)
        if served:
            worker.served = True
            self._watch(worker, *served)  # the server reports its start (:meth:`_started`)
        elif self.ahead and not attempt.group.gang and self._running() >= self.max_workers:
            worker.backlogged = True  # the fork server is gone: lookahead held here
            if spec.attempt:  # a retry takes the next free slot, as without lookahead
                self.backlog.appendleft(worker)
            else:
                self.backlog.append(worker)
        else:
            self._start(worker)
        self.workers[key] = worker

    def _start(self, worker: Worker) -> None:
        """Start ``worker``'s process here (no fork server)."""
        ctx, attempt = self.ctx, worker.job
        spec = attempt.spec
        if self.isolation == "fork":
            inputs, durable = attempt.ready.inputs, self.committer is None
            pid, out_fd, err_fd = workers.fork_worker(
                lambda: run_task(ctx.flow_cls, ctx.graph, ctx.store, spec, inputs, durable),
                self.pid,
                close=list(self.by_fd),  # the other tasks' pipes: not this one's to hold
            )
        elif self.isolation == "pool":
            proc = worker.pool = self._idle_pool_process()
            proc.submit((spec, attempt.ready.inputs))
            pid, out_fd, err_fd = proc.pid, proc.out_fd, proc.err_fd
        else:
            # unbuffered, as a forked task's line-buffered streams: its lines arrive live
            env = {**os.environ, "PYTHONUNBUFFERED": "1"}
            popen = worker.popen = workers.spawn_worker(step_command(ctx, spec), env)
            pid, out_fd, err_fd = popen.pid, popen.stdout.fileno(), popen.stderr.fileno()
        worker.pid = pid
        self._watch(worker, out_fd, err_fd)
        self.guardian.watch(pid)  # (the fork server tells the guardian about its own children)
        self._started(worker)

    def _watch(self, worker: Worker, out_fd: int, err_fd: int) -> None:
        """Read ``worker``'s stdout and stderr from the poller."""
        worker.fds = {out_fd: "stdout", err_fd: "stderr"}
        for fd in worker.fds:
            os.set_blocking(fd, False)
            self.poller.register(fd, worker)
            self.by_fd[fd] = worker

    def _started(self, worker: Worker) -> None:
        """``worker``'s process started: its start time and @timeout deadline count from now."""
        worker.started_at = now = time.time()
        seconds = worker.job.group.policy.timeout
        if seconds:  # (a stop may have set an earlier one already)
            deadline = now + seconds + TIMEOUT_GRACE
            worker.deadline = min(deadline, worker.deadline or deadline)
        if worker.served:  # announced in the server's order: after the exits reported before
            self.exits.append((worker, None, False))
        else:
            self._announce(worker)

    def _announce(self, worker: Worker) -> None:
        """Tell the user (and the progress counts) that ``worker`` started, then pass on the
        lines it wrote before that (held by :meth:`_emit`)."""
        attempt = worker.attempt
        self.say("Task is starting" + (f" (retry {attempt})." if attempt else "."), worker)
        self.dispatcher.started(worker.job)
        self._release_early_lines(worker)

    def _release_early_lines(self, worker: Worker) -> None:
        early, worker.early = worker.early, None
        for stream, lines, newline, stamp in early or ():
            self._emit(worker, stream, lines, newline, stamp)

    def _running(self) -> int:
        """Attempts started (or launched on the fork server), not in the backlog."""
        return sum(1 for w in self.workers.values() if not w.backlogged)

    def _start_backlog(self) -> None:
        """Start backlogged attempts while fewer than ``--max-workers`` run."""
        while self.backlog and self._running() < self.max_workers:
            worker = self.backlog.popleft()
            worker.backlogged = False
            self._start(worker)

    def stop(self, attempts: Sequence[Attempt] | None) -> None:
        """Stop some attempts (a gang whose node failed), or every task (the run failed)."""
        if attempts is None:
            self._stop_all()
            return
        ids = {(a.task_id, a.attempt) for a in attempts}
        stopping = [w for w in self.workers.values() if (w.task_id, w.attempt) in ids]
        for worker in stopping:
            worker.deadline = time.time() + TIMEOUT_GRACE  # SIGKILL if SIGTERM is not enough
        self._signal(stopping, signal.SIGTERM)

    def _signal(self, running: Sequence[Worker], sig: int) -> list[Any]:
        """Send ``sig`` to the process trees and groups of ``running``: those the fork server
        forked through it (it knows which are still its children, and drops the ones it still
        queues), the others from here; backlogged ones are dropped (reported ended by ``sig``
        without having run). Returns the processes signalled from here."""
        served = [w.key for w in running if w.served]
        if served and self.server is not None:
            self.server.signal(served, sig)
        for worker in running:
            if worker.backlogged:
                self.backlog.remove(worker)
                worker.backlogged = False
                worker.returncode = -sig
                self.exits.append((worker, -sig, False))
        pids = [w.pid for w in running if not w.served and w.pid is not None]
        return workers.signal_trees(pids, sig)

    # -- the fork server -----------------------------------------------------------------------

    def _serve(self, key: int, attempt: Attempt) -> tuple[int, int] | None:
        """Have the fork server start ``attempt`` as ``key``; the read ends of its stdout and
        stderr, or None if the server is gone (the caller forks it here)."""
        assert self.server is not None
        request = self._encode_request(attempt.spec, attempt.ready.inputs)
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            # a retry goes ahead of the queue: it takes the slot its failure freed, as without
            # lookahead
            group = attempt.group
            self.server.launch(key, request, out_w, err_w, now=group.gang, first=group.attempt > 0)
        except ServerGone:  # the next wait() reports the attempts lost with it
            for fd in (out_r, err_r):
                os.close(fd)
            self.server_lost = True
            return None
        finally:
            os.close(out_w)
            os.close(err_w)
        return out_r, err_r

    def _encode_request(self, spec: Any, inputs: tuple[Any, ...]) -> bytes:
        """The launch request of a task (see :data:`_REQUEST`): its input records go to the
        fork server once for all the tasks that share them (a foreach's body tasks)."""
        last = self._last_inputs
        if (
            last is not None
            and len(last[0]) == len(inputs)
            and all(map(operator.is_, last[0], inputs))
        ):  # the same records as the last task's: the server has them
            ident, blob = last[1], b""
        else:
            # a join of many inputs: their size judged from the first one's, not pickled whole
            # only to be dropped (1,000 refs: ~55 KB, ~4 ms)
            large = (
                len(inputs) > 8
                and len(inputs) * len(pickle.dumps(inputs[:1], pickle.HIGHEST_PROTOCOL))
                > MAX_REQUEST // 2
            )
            blob = b"" if large else pickle.dumps(inputs, pickle.HIGHEST_PROTOCOL)
            ident = next(self._input_ids) if blob and len(blob) <= MAX_REQUEST // 2 else 0
            blob = blob if ident else b""  # 0: large input records, the task reads them
            self._last_inputs = (inputs, ident)
        split = spec.split_index
        if split is None or spec.ubf_context == UBF_CONTROL:
            split = -1
        spec_bytes = pickle.dumps(_SPEC_FIELDS(spec), pickle.HIGHEST_PROTOCOL)
        if _REQUEST.size + len(blob) + len(spec_bytes) > MAX_REQUEST:  # (a join of many)
            ident, blob = 0, b""
        return b"".join((_REQUEST.pack(ident, len(blob), split), blob, spec_bytes))

    @property
    def _serving(self) -> bool:
        return self.server is not None and not self.server_lost

    def _prepare_request(self, request: memoryview) -> Any:  # pragma: no cover - in the server
        """In the fork server, when the launch of the task ``request`` names arrives (before
        its fork; for a queued launch, while the slots are still busy): decode the
        task's input records once for all the tasks that share them (a foreach's body tasks;
        a request after the first names them by their id) and load the foreach chunk the task
        reads (:func:`~flowkernel.engine.executor.preload_input`), so that the task inherits
        them. The task's spec stays pickled: decoding it here would cost the server more
        copy-on-write faults than it saves the task. Returns the request unchanged if that
        fails (the task then decodes it itself and reports what is wrong)."""
        try:
            ident, size, split = _REQUEST.unpack_from(request)
            inputs = None
            if ident:
                memo = self._decoded
                inputs = memo.get(ident)
                if inputs is None and size:
                    inputs = pickle.loads(request[_REQUEST.size : _REQUEST.size + size])
                    if not memo:  # the first task: fill the flow's caches, once
                        preload_flow(self.ctx.flow_cls)
                    if len(memo) >= 8:
                        del memo[next(iter(memo))]
                    memo[ident] = inputs
                # once per chunk: the server's every write is a copy-on-write fault too
                done = self._preloaded
                if split >= 0 and (done[0] != ident or split not in done[1]):
                    self._preloaded = (ident, preload_input(self.ctx.store, inputs, split))
            return request[_REQUEST.size + size :], inputs
        except Exception:
            return bytes(request)

    def _run_request(self, request: Any) -> int:  # pragma: no cover - runs in a task process
        """What a task process forked by the server runs: the attempt ``request`` names,
        prepared by :meth:`_prepare_request` (or the request itself if that failed). Input
        records the server does not have (large ones) are read from the datastore."""
        if isinstance(request, tuple):
            spec_bytes, inputs = request
        else:
            _, size, _ = _REQUEST.unpack_from(request)
            blob = request[_REQUEST.size : _REQUEST.size + size]
            inputs = pickle.loads(blob) if size else None
            spec_bytes = request[_REQUEST.size + size :]
        spec = TaskSpec(*pickle.loads(spec_bytes))
        ctx = self.ctx
        return run_task(ctx.flow_cls, ctx.graph, ctx.store, spec, inputs, self.committer is None)

    def _server_events(self, block: bool = False) -> None:
        """Read the fork server's events: a start sets the worker's pid, an exit is queued for
        :meth:`_served_exits` (not handled here: this may run in the middle of reading a pipe)."""
        assert self.server is not None
        try:
            events = self.server.events(block)
        except ServerGone:
            self.server_lost = True
            return
        for kind, key, pid, code in events:
            worker = self.workers.get(key)
            if worker is None:
                if kind == b"X":
                    self.server.release()  # (not expected: every exit is a known worker's)
                continue
            if kind == b"s":
                worker.pid = pid
                self._started(worker)
            else:  # b"x", b"X"
                worker.returncode = code
                self.exits.append((worker, code, kind == b"X"))

    def _served_exits(self) -> None:
        """Report the attempts whose exit the fork server reported (and the backlogged ones
        dropped); if the server is gone, report the attempts it had running or queued as lost
        and fork from here from now on."""
        while self.exits:
            worker, code, held = self.exits.pop(0)
            if code is None:  # a start, told after the exits the server reported before it
                if worker.early is not None:
                    self._announce(worker)
                continue
            if worker.key in self.workers:
                self._ended(worker, code)
            if held and self._serving:
                # handled (a final failure has stopped the queued attempts): the slot is free
                assert self.server is not None
                self.server.release()
        if self.server_lost and self.server is not None:
            self._server_gone()

    def _server_gone(self) -> None:
        server, self.server = self.server, None
        assert server is not None
        self.server_lost = False
        self.poller.unregister(server.fd)
        status = server.close(kill=True)
        lost = [w for w in self.workers.values() if w.served]
        forked = server.forked()
        for worker in lost:  # forked, its start never told: it may have run, as a running one
            worker.forked = worker.pid is None and worker.key in forked
        queued = sum(w.pid is None and not w.forked for w in lost)  # not started: run again
        how = describe_exit(None if status is None else os.waitstatus_to_exitcode(status))
        message = f"The fork server (pid {server.pid}) is gone ({how})"
        if len(lost) > queued:
            message += f"; {len(lost) - queued} running task(s) died with it and will run again"
        if queued and self.ahead:
            message += f"; {queued} queued task(s) had not started and will start from here"
        elif queued:
            message += f"; {queued} queued task(s) never started and will run as new attempts"
        message += "; tasks are forked by the controller from now on."
        self.say(message, force=True, err=True)
        for worker in lost:  # their groups: what they started (they had PR_SET_PDEATHSIG)
            if worker.pid is not None:
                workers.signal_groups([worker.pid], signal.SIGKILL)
                self.guardian.release(worker.pid)
        for worker in lost:
            if worker.forked:  # told now, so that its end reads as a running task's
                self._announce(worker)
            self._ended(worker, -signal.SIGKILL, lost=True)

    # -- output --------------------------------------------------------------------------------

    def _read(self, worker: Worker) -> None:
        for fd in list(worker.fds):
            self._drain(worker, fd)

    def _drain(self, worker: Worker, fd: int, bounded: bool = True) -> None:
        """Read what ``fd`` has; ``bounded``: at most a few reads, so that one task writing
        without pause cannot starve the others or the timeouts (the poller calls again)."""
        stream = worker.fds[fd]
        for _ in range(_READS_PER_ROUND) if bounded else itertools.count():
            try:
                data = os.read(fd, _READ_SIZE)
            except BlockingIOError:
                return
            if not data:
                self._close_fd(worker, fd)
                return
            self._feed(worker, stream, data)

    def _feed(self, worker: Worker, stream: str, data: bytes) -> None:
        """Assemble lines in linear time: only new data is searched for a newline, and a line
        longer than MAX_LINE is passed on in pieces of that size (``newline=False``)."""
        pending = worker.partial[stream]
        end = data.rfind(b"\n")
        if end >= 0:
            head = bytes(pending) + data[:end] if pending else data[:end]
            pending.clear()
            pending += memoryview(data)[end + 1 :]
            self._emit(worker, stream, head.split(b"\n"), True)
        else:
            pending += data
        while len(pending) >= MAX_LINE:
            self._emit(worker, stream, [bytes(pending[:MAX_LINE])], False)
            del pending[:MAX_LINE]

    def _emit(
        self,
        worker: Worker,
        stream: str,
        lines: list[bytes],
        newline: bool,
        stamp: float | None = None,
    ) -> None:
        """Hand ``lines`` to every sink (``newline``: each ended with a newline). Lines of a
        task whose start is not announced yet (the fork server's report of it was not read,
        or waits behind an exit reported before it) are held until it is (their pid comes
        with that report)."""
        if stamp is None:
            stamp = time.time()
        if worker.early is not None:
            worker.early.append((stream, lines, newline, stamp))
            return
        for raw in lines:
            line = LogLine(
                self.info,
                worker.step,
                worker.task_id,
                worker.attempt,
                stream,
                raw.decode("utf-8", "surrogateescape"),
                stamp,
                worker.pid,
                newline=newline,
            )
            for sink in list(self.sinks):
                try:
                    sink.emit(line)
                except BrokenPipeError:
                    self._lose_console()
                except Exception as exc:
                    self.sinks.remove(sink)
                    name = type(sink).__name__
                    self.say(f"log sink {name} failed and was disabled: {exc}", force=True)

    def _close_fd(self, worker: Worker, fd: int) -> None:
        stream = worker.fds.pop(fd)
        pending = worker.partial[stream]
        if pending:  # the last line had no newline
            self._emit(worker, stream, [bytes(pending)], False)
            pending.clear()
        self.poller.unregister(fd)
        del self.by_fd[fd]
        if worker.pool is not None:
            return  # the pool process's pipes outlive the attempt
        if worker.popen is None:
            os.close(fd)
        else:
            getattr(worker.popen, stream).close()

    # -- the pool (--isolation pool) -----------------------------------------------------------

    def _idle_pool_process(self) -> PoolProcess:
        for proc in self.pool:
            if not proc.busy:
                return proc
        ctx, durable = self.ctx, self.committer is None

        def run(request: Any) -> int:  # pragma: no cover - runs in the pool process
            spec, inputs = request
            return run_task(ctx.flow_cls, ctx.graph, ctx.store, spec, inputs, durable)

        proc = pool.start(run, self.pid)
        self.poller.register(proc.results, proc)
        self.guardian.watch(proc.pid)
        self.pool.append(proc)
        return proc

    def _pool_result(self, proc: PoolProcess) -> None:
        """A pool process reported its attempt's exit code (or closed its result pipe)."""
        try:
            code = proc.read_result()
        except EOFError:  # it died: _reap reports a running attempt; an idle one just goes
            self.poller.unregister(proc.results)
            proc.results_watched = False
            if not proc.busy:
                self._retire(proc)
            return
        if code is None:
            return
        worker = next(w for w in self.workers.values() if w.pool is proc)
        del self.workers[worker.key]
        for fd in list(worker.fds):  # all it printed is in the pipes before its result
            self._drain(worker, fd, bounded=False)
            if fd in worker.fds:
                self._close_fd(worker, fd)
        worker.returncode = code
        self._finished(worker)

    def _retire(self, proc: PoolProcess) -> None:
        """Stop a pool process (idle, or dead): EOF on its requests, then its group is killed
        and it is reaped."""
        self.pool.remove(proc)
        if proc.results_watched:
            self.poller.unregister(proc.results)
        os.close(proc.requests)  # an idle process exits on EOF
        workers.private_fds.discard(proc.requests)
        proc.requests = -1
        try:
            os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
            workers.signal_groups([proc.pid], signal.SIGKILL)  # what its tasks left running
            os.waitpid(proc.pid, 0)
        except ChildProcessError:  # reaped already (it died running an attempt)
            pass
        self.guardian.release(proc.pid)
        proc.close_pipes()

    # -- exits ---------------------------------------------------------------------------------

    def _reap(self) -> None:
        """Reap the attempts forked here (or spawned) that exited."""
        for key, worker in list(self.workers.items()):
            if key not in self.workers or worker.served or worker.pid is None:  # reaped by a
                continue  # nested call (a failure stopping all), the fork server's, backlogged
            # never block: a task may close its pipes and run on (and a grandchild may hold
            # them open after the task exited)
            assert worker.pid is not None
            status = workers.reap_attempt(worker.pid)
            if status is None:
                continue
            self.guardian.release(worker.pid)
            self._ended(worker, os.waitstatus_to_exitcode(status))

    def _ended(self, worker: Worker, returncode: int, lost: bool = False) -> None:
        """Attempt ``worker`` exited with ``returncode``: read the rest of its output, then
        report it."""
        for fd in list(worker.fds):
            self._drain(worker, fd, bounded=False)
            if fd in worker.fds:
                self._close_fd(worker, fd)
        if worker.early is not None:  # it never started (or its start was not announced)
            self._release_early_lines(worker)
        worker.returncode = returncode
        if worker.popen is not None:
            worker.popen.returncode = returncode
        del self.workers[worker.key]
        if worker.pool is not None:  # it died: the next attempt gets a fresh pool process
            self._retire(worker.pool)
        self._finished(worker, lost)
        if self.backlog:
            self._start_backlog()

    def _finished(self, worker: Worker, lost: bool = False) -> None:
        started = worker.pid is not None or worker.forked
        if started or worker.returncode is None or worker.returncode >= 0:
            ending = abnormal_end_line(worker.returncode, worker.killed)
        elif self.ahead:  # dropped from the queue, or lost with it: withdrawn, no trace
            ending = None  # (see Dispatcher.finished)
        else:  # lost with the fork server before its start was read
            ending = NEVER_STARTED_LOST
        if ending is not None:  # the task's own stderr log says how it ended
            self._emit(worker, "stderr", [ending.encode()], True)
        self.dispatcher.finished(
            worker.job,
            worker.returncode,
            stopped=worker.killed,
            started_at=worker.started_at,
            pid=worker.pid,
            lost=lost,
            started=started,
        )

    # -- stopping ------------------------------------------------------------------------------

    def _stop_all(self) -> None:
        """Terminate every running task's process tree (SIGTERM, SIGKILL after
        :data:`STOP_GRACE`, or at once on one more signal)."""
        running = list(self.workers.values())
        if not running:
            return
        for worker in running:
            worker.killed = True
            if worker.pid is not None:  # (not said for one not known to have started)
                self.say("Stopping this task: the workflow is failing.", worker, force=True)
        procs = self._signal(running, signal.SIGTERM)
        deadline = time.time() + STOP_GRACE
        # a signal beyond the one that interrupted the run, even one that came before this
        # point, ends the grace: no more waiting
        while self.workers and time.time() < deadline and self.signals <= self.signals_acted_on:
            self._handle(self.poller.poll(0.05))
        workers.kill_all(procs, [w.pid for w in running if not w.served and w.pid is not None])
        self._signal([w for w in running if w.served], signal.SIGKILL)
        while self.workers:
            self._handle(self.poller.poll(0.05))

    def _enforce_timeouts(self) -> None:
        now = time.time()
        for worker in list(self.workers.values()):
            if worker.deadline is not None and now > worker.deadline:
                worker.deadline = None
                self.say("Task exceeded its @timeout: killing its process tree.", worker, True)
                self._signal([worker], signal.SIGKILL)

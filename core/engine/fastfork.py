"""A task fork without CPython's generic after-fork work, where that is provably the same.

``os.fork()`` runs ``PyOS_AfterFork_Child`` in the child: it rebuilds the interpreter's locks,
thread states and signal flags for a child of a *multi-threaded* parent, then runs every
``os.register_at_fork(after_in_child=...)`` hook. In a task forked from a warm parent that is
most of the fork floor's own work (a child that exits at once: ~215 page faults after
``os.fork()``, ~45 after libc's ``fork()``; bench/README.md). :meth:`Forker.fork` forks like
``os.fork()`` but, when the parent is in a state where that work has nothing to do, the
child does only what still matters there. Everywhere else it is ``os.fork()``, exactly.

**What ``os.fork()`` does on CPython 3.11** (``Modules/posixmodule.c``, checked against the
disassembly of this interpreter's ``libpython3.11``): ``sys.audit("os.fork")``;
``PyOS_BeforeFork()``: every *before* hook (last registered first), then the import lock
taken; ``fork()``; in the parent ``PyOS_AfterFork_Parent()``: the import lock released, every
*after_in_parent* hook; in the child ``PyOS_AfterFork_Child()``, which in order does

1. ``_PyGILState_Reinit``: a new thread-specific-data key for the GIL state, set to the
   current thread state;
2. ``tstate->native_thread_id = PyThread_get_thread_native_id()``;
3. ``_PyEval_ReInitThreads``: a new GIL, taken; a new pending-calls lock; every other thread
   state deleted;
4. ``_PyImport_ReInitLock``: the import lock new, held one level less than after
   ``PyOS_BeforeFork`` (so as it was before it: free unless the fork was made during an
   import);
5. ``_PySignal_AfterFork``: the "tripped" flags of signals whose Python handler has not run
   yet cleared, so that a signal that came to the parent is not handled twice;
6. ``_PyRuntimeState_ReInitThreads``: the runtime's mutexes new, ``main_thread`` = this thread;
7. ``_PyInterpreterState_DeleteExceptMain``: every subinterpreter deleted;
8. every *after_in_child* hook in registration order (a hook that raises is reported with
   ``PyErr_WriteUnraisable(hook)``, and the next one runs).

**The fast fork** (:meth:`Forker.fork`) is taken when, in the parent, (a) every *before* and
*after_in_parent* hook is one of the standard library's lock pairs (``logging``'s module lock,
``concurrent.futures.thread``'s shutdown lock: grep of the 3.11 standard library; the other
two registrations there, ``threading`` and ``random``, are *after_in_child* only), (b) the
process has one thread (``Threads:`` in ``/proc/self/status``), the one the forker was made
in, and (c) the import lock is free. Then it is ``sys.audit("os.fork")`` and libc's ``fork()``
through ``ctypes.PyDLL`` (which keeps the GIL held across the call, as ``os.fork`` does),
nothing else in the parent: the skipped ``PyOS_BeforeFork``/``AfterFork_Parent`` would only
take and release locks that the only thread, here, does not hold (C-level ``pthread_atfork``
handlers run in libc's ``fork()`` either way). In the child, on the state the fork copied, it
checks (d) that the thread state is the interpreter's only one and there is no
subinterpreter, (e) that no signal has a Python-level handler and (f) that ``threading``
knows only this thread: ``_active`` is ``{get_ident(): _main_thread}``, ``_limbo`` is empty,
``_shutdown_locks`` holds at most the main thread's lock and no other ``Thread`` object
exists (``_dangling``). If one fails, the child calls ``PyOS_AfterFork_Child()`` itself: the
whole fork is then ``os.fork()``'s (the parent side was, by (a)-(c)). If all hold, the child
does only step 2 (at the offset :func:`_thread_state` finds) and step 8 without the hooks of
(a) and without ``threading._after_fork`` (``random``'s reseed is called as the two C calls
its Python method makes), because the rest has nothing to do:

* steps 1, 3, 6 and 7: the only thread holds the GIL; its thread-specific data was copied by
  ``fork()`` (step 1's key holds this thread state already); the pending-calls lock and the
  runtime's mutexes are taken only inside C calls this thread is not in (or by a C signal
  handler, which runs on this thread and returns before it goes on); there is no other thread
  state or interpreter (d); ``main_thread`` is this thread's id (``pthread_self()`` is the
  same in the child);
* step 4: the import lock was free (c) and ``PyOS_BeforeFork`` did not take it;
* step 5: a flag is tripped only by CPython's C handler, installed only while a Python handler
  is set (e); one tripped before that handler was reset was cleared the first time the main
  thread checked its eval breaker after it (every Python call and loop does), before the
  fork;
* the hooks of (a): their *before* half did not run, so their locks are as free as in the
  parent, where the only thread is in :meth:`Forker.fork` (its caller must hold no lock of
  ``logging``'s: the fork server's loop holds none); ``threading._after_fork``: by (f) it
  would set ``_main_thread`` to the object it is, give it the same ident, replace locks nobody
  holds with new free ones and stop no thread. What a step sees of ``threading``
  (``current_thread()``, ``main_thread()`` and its ``native_id``, which CPython 3.11 does not
  update after a fork either, ``get_ident()``, ``get_native_id()``, ``enumerate()``, starting
  and joining threads) is the same.

**Missed**, to our knowledge, nothing a Python program can observe: the audit event fires,
every hook the program registered runs where ``os.fork()`` runs it. What differs is internal:
some locks are the parent's free objects instead of new ones. The hooks are read from the
interpreter's own lists (:func:`_registry`), so hooks registered by a user's flow, its
imports, plugins or C code count, whenever they were registered. Only CPython 3.11 on Linux
is covered (other versions change ``PyOS_AfterFork_Child``); elsewhere, or when
:meth:`Forker.prepare` cannot find what it needs, the caller keeps ``os.fork()``.
``FLOWKERNEL_FAST_FORK=0`` turns it off.
"""

from __future__ import annotations

import _imp
import _thread
import bisect
import ctypes
import functools
import mmap
import os
import struct
import sys
import threading
import types
from typing import Any, NoReturn

try:
    import _signal
except ImportError:  # pragma: no cover
    import signal as _signal  # type: ignore[no-redef]

#: How the last fork made by a :class:`Forker` in this process (or in the process it was forked
#: from) went: ``"fast"``, or why not (a forked task inherits it: tests read it there).
last = ""

_WORD = struct.Struct("@P")
_LIST_HEAD = struct.Struct("@nPnP")  # PyListObject: ob_refcnt, ob_type, ob_size, ob_item


def wanted() -> bool:
    """Whether the environment allows the fast fork (``FLOWKERNEL_FAST_FORK=0`` does not)."""
    return os.environ.get("FLOWKERNEL_FAST_FORK", "1").lower() not in ("0", "false", "no")


class _Memory:
    """This process's private writable memory (heaps, arenas, libraries' data), read only where
    ``/proc/self/maps`` says it is mapped: a stray pointer reads as ``None``, it never faults."""

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.ends: list[int] = []
        with open("/proc/self/maps", "rb") as maps:
            for line in maps:
                span, perms = line.split(None, 2)[:2]
                if perms.startswith(b"rw") and perms.endswith(b"p"):
                    start, end = span.split(b"-")
                    self.starts.append(int(start, 16))
                    self.ends.append(int(end, 16))

    def read(self, address: int, size: int) -> bytes | None:
        i = bisect.bisect_right(self.starts, address) - 1
        if i < 0 or address + size > self.ends[i] or size <= 0:
            return None
        return ctypes.string_at(address, size)

    def words(self, address: int, count: int) -> tuple[int, ...]:
        """Up to ``count`` pointer-sized words from ``address``, fewer where the mapping ends."""
        i = bisect.bisect_right(self.starts, address) - 1
        if i < 0 or address >= self.ends[i]:
            return ()
        count = min(count, (self.ends[i] - address) // _WORD.size)
        return tuple(w for (w,) in _WORD.iter_unpack(ctypes.string_at(address, count * _WORD.size)))

    def list_holds(self, address: int, item: int) -> bool:
        """Whether ``address`` is a Python ``list`` that holds the object at ``item``."""
        if not address or address % _WORD.size:
            return False
        head = self.read(address, _LIST_HEAD.size)
        if head is None:
            return False
        _, kind, size, items = _LIST_HEAD.unpack(head)
        if kind != id(list) or not 0 < size < 4096:
            return False
        data = self.read(items, size * _WORD.size)
        return data is not None and item in (w for (w,) in _WORD.iter_unpack(data))


def _registry(mem: _Memory, interp: int) -> tuple[list[Any], list[Any], list[Any]] | None:
    """The interpreter's ``before_forkers``, ``after_forkers_parent`` and
    ``after_forkers_child`` lists, the ones ``os.register_at_fork`` appends to and
    ``PyOS_BeforeFork``/``PyOS_AfterFork_*`` run (three adjacent ``PyObject *`` fields of
    ``PyInterpreterState``): found by content (logging registers one hook in each, threading
    one after_in_child), or ``None``. Python has no API that lists them."""
    import logging  # (imported everywhere flowkernel runs: its hooks identify the lists)

    marks = (id(logging._acquireLock), id(logging._releaseLock), id(threading._after_fork))
    words = mem.words(interp, 8192)
    found = (
        k
        for k in range(2, len(words))
        if mem.list_holds(words[k], marks[2])
        and mem.list_holds(words[k - 1], marks[1])
        and mem.list_holds(words[k - 2], marks[0])
    )
    k = next(found, None)
    if k is None:
        return None
    lists = tuple(ctypes.cast(words[i], ctypes.py_object).value for i in (k - 2, k - 1, k))
    if id(logging._after_at_fork_child_reinit_locks) not in map(id, lists[2]):
        return None
    return lists  # type: ignore[return-value]


def _words(address: int, count: int) -> memoryview:
    """``count`` native words of this process's memory at ``address``, read and written in
    place (no Python object is made per access, so no page but theirs is touched)."""
    return memoryview((ctypes.c_uint64 * count).from_address(address)).cast("B").cast("Q")


def _c_function(lib: Any, name: str, restype: Any = None) -> Any:
    function = getattr(lib, name)
    function.restype, function.argtypes = restype, ()
    return function


def _thread_state(mem: _Memory, interp: int) -> tuple[memoryview, int] | None:
    """The current thread state's words and the index of its ``native_thread_id``: it must be
    the interpreter's only one (``prev`` and ``next``, its first two words, NULL; ``interp``
    the third, ``cpython/pystate.h``), and ``native_thread_id`` is the word after
    ``thread_id``, found where the two hold this thread's ids."""
    tstate = _c_function(ctypes.pythonapi, "PyThreadState_Get", ctypes.c_void_p)()
    found = mem.words(tstate, 64)
    ident, native = _thread.get_ident(), _thread.get_native_id()
    at = [k for k in range(3, len(found) - 1) if found[k] == ident and found[k + 1] == native]
    if len(found) < 64 or found[:3] != (0, 0, interp) or len(at) != 1:
        return None
    return _words(tstate, 64), at[0] + 1


def _interpreters_head(interp: int) -> tuple[memoryview, int] | None:
    """``_PyRuntime.interpreters.head`` (followed by ``.main``, both this interpreter while it
    is the only one): its words and index. A subinterpreter is inserted at the head."""
    api = ctypes.pythonapi
    try:
        runtime = ctypes.addressof(ctypes.c_char.in_dll(api, "_PyRuntime"))
    except ValueError:
        return None
    words = _words(runtime, 32)
    at = [k for k in range(31) if words[k] == interp and words[k + 1] == interp]
    head = _c_function(api, "PyInterpreterState_Head", ctypes.c_void_p)()
    if len(at) != 1 or head != interp:
        return None
    return words, at[0]


class Forker:
    """Forks like ``os.fork()``, with the child's after-fork work cut where that is sound (see
    the module docstring). Made once per process with :meth:`prepare`, in the thread that
    will fork; call :meth:`fork` from code that holds no lock of ``logging`` or
    ``threading`` (the fork server's loop)."""

    def __init__(
        self,
        lists: tuple[list[Any], list[Any], list[Any]],
        tstate: tuple[memoryview, int],
        head: tuple[memoryview, int],
        interp: int,
    ) -> None:
        self.lists = lists  #: the interpreter's before, after_in_parent, after_in_child hooks
        self.tstate, self.native_id = tstate
        self.runtime, self.head = head
        self.interp = interp
        self.ident = _thread.get_ident()
        self.signals = tuple(int(s) for s in _signal.valid_signals())
        #: ``/proc/self/status`` read into memory shared with every child (``MAP_SHARED``):
        #: the kernel's writes to it never copy a page
        self.status = os.open("/proc/self/status", os.O_RDONLY | os.O_CLOEXEC)
        self.buffer = mmap.mmap(-1, 4096)
        self.buffers = [self.buffer]
        self.after_child = _c_function(ctypes.pythonapi, "PyOS_AfterFork_Child")
        # PyDLL: the GIL stays held across fork(), as in os.fork (a CDLL call releases it)
        self.raw_fork = _c_function(ctypes.PyDLL(None), "fork", ctypes.c_int)
        self.watch = tuple(_words(id(hooks), 3) for hooks in lists)  #: their ob_size: [2]
        self.sizes = (-1, -1, -1)
        self.calls: tuple[Any, ...] | None = None

    @classmethod
    def prepare(cls) -> Forker | None:
        """A forker for this process, or ``None`` where only ``os.fork()`` is sound: not
        CPython 3.11 on Linux, ``FLOWKERNEL_FAST_FORK=0``, more than one thread, or the
        interpreter's hook lists or thread state not found. Call it in the thread that will
        fork, while it is the only one."""
        if not (
            wanted()
            and sys.platform.startswith("linux")
            and sys.implementation.name == "cpython"
            and sys.version_info[:2] == (3, 11)
        ):
            return None
        try:
            mem = _Memory()
            interp = _c_function(ctypes.pythonapi, "PyInterpreterState_Get", ctypes.c_void_p)()
            lists = _registry(mem, interp)
            tstate = _thread_state(mem, interp)
            head = _interpreters_head(interp)
            if lists is None or tstate is None or head is None:
                return None
            forker = cls(lists, tstate, head, interp)
        except (OSError, AttributeError, ValueError):
            return None
        return forker if forker._one_thread() else None

    @property
    def fds(self) -> tuple[int, ...]:
        """Descriptors this forker holds open, which a forked task should close."""
        return (self.status,)

    def fork(self) -> int:
        """Fork: 0 in the child, the child's pid in the parent; ``OSError`` if ``fork()``
        failed. Where the module docstring's conditions hold in this process, the child's
        after-fork work is cut, else (or if its own checks fail) this is ``os.fork()``;
        :data:`last`, in the child, says which way it went."""
        # (read through memoryviews: a list's length, or a Python object touched here, would
        # be a page this process writes, so copies, after every fork while a child shares it)
        before, parent, child = self.watch
        if before[2] != self.sizes[0] or parent[2] != self.sizes[1] or child[2] != self.sizes[2]:
            self._plan()
        global last
        if self.calls is None or _thread.get_ident() != self.ident or _imp.lock_held():
            last = "os.fork: " + (
                "a before or after_in_parent hook"
                if self.calls is None
                else "another thread forks"
                if _thread.get_ident() != self.ident
                else "the import lock is held"
            )
            return os.fork()
        read = os.preadv(self.status, self.buffers, 0)  # (not self._one_thread(): a call less)
        if self.buffer.find(b"\nThreads:\t1\n", 0, read) < 0:
            last = "os.fork: other threads run"
            return os.fork()
        sys.audit("os.fork")
        pid = self.raw_fork()
        if pid == 0:
            try:
                self._child()
            except BaseException:  # never return into the parent's code: as a fatal error does
                _fatal()
            return 0
        if pid < 0:  # out of processes or memory: os.fork() says why (or forks after all)
            return os.fork()
        return pid

    def _one_thread(self) -> bool:
        """Whether this process has one thread (``Threads:`` of ``/proc/self/status``)."""
        read = os.preadv(self.status, self.buffers, 0)
        return self.buffer.find(b"\nThreads:\t1\n", 0, read) >= 0

    def _plan(self) -> None:
        """Sort the registered hooks (the lists only ever grow): :attr:`calls` is what the
        child calls, or ``None`` if a *before* or *after_in_parent* hook is not one of the
        standard library's lock pairs (then it runs where ``os.fork()`` runs it)."""
        before, parent, child = (list(hooks) for hooks in self.lists)
        self.sizes = (len(before), len(parent), len(child))
        skip_before, skip_parent, skip_child = _stdlib_lock_hooks()
        if not all(_known(h, skip_before) for h in before) or not all(
            _known(h, skip_parent) for h in parent
        ):
            self.calls = None
            return
        skip_child.append(threading._after_fork)  # type: ignore[attr-defined]
        calls: list[Any] = []
        for hook in child:
            if not _known(hook, skip_child):
                calls.extend(_reseed(hook) or (hook,))
        self.calls = tuple(calls)

    def _child(self) -> None:  # pragma: no cover - runs in the child
        """In the child: ``PyOS_AfterFork_Child`` for a child of a single-threaded parent
        (module docstring) if the state copied from the parent shows nothing for the rest of
        it to do, else ``PyOS_AfterFork_Child`` itself. (One function: every Python function
        a child calls costs it a copy of the pages of its objects.)"""
        global last
        why = ""
        if self.tstate[0] or self.tstate[1]:
            why = "other thread states exist"
        elif self.runtime[self.head] != self.interp:
            why = "subinterpreters exist"
        else:
            getsignal = _signal.getsignal
            for sig in self.signals:
                handler = getsignal(sig)
                if handler is not None and not isinstance(handler, int):
                    why = f"a Python handler for signal {sig}"
                    break
            t = threading
            if not why and (
                len(t._active) != 1  # type: ignore[attr-defined]
                or t._active.get(self.ident) is not t._main_thread  # type: ignore[attr-defined]
                or t._limbo  # type: ignore[attr-defined]
                or not t._shutdown_locks <= {t._main_thread._tstate_lock}  # type: ignore
                or len(t._dangling.data) != 1  # type: ignore[attr-defined]
            ):
                why = "threading holds other threads"
        if why:
            last = why
            self.after_child()
            return
        last = "fast"
        self.tstate[self.native_id] = _thread.get_native_id()
        for hook in self.calls or ():
            try:
                hook()
            except BaseException as exc:
                _unraisable(hook, exc)


def _fatal() -> NoReturn:  # pragma: no cover - in a child whose after-fork work failed
    """End a child whose after-fork work failed (``os.fork()``'s child would have stopped with
    a fatal error): the traceback on stderr, exit status 70."""
    import traceback

    traceback.print_exc()
    sys.stderr.flush()
    os._exit(70)


def _reseed(hook: Any) -> tuple[Any, ...]:
    """``random``'s hook (``random._inst.seed``, ``Random.seed(None)``) as the two C calls it
    makes (``_random.Random.seed(inst)``: from ``os.urandom``; ``inst.gauss_next = None``), if
    ``hook`` is that one; else ``()``."""
    random = sys.modules.get("random")
    if (
        random is None
        or type(hook) is not types.MethodType
        or hook.__func__ is not random.Random.__dict__.get("seed")
        or type(hook.__self__) is not random.Random
    ):
        return ()
    import _random

    inst = hook.__self__
    return (
        functools.partial(_random.Random.seed, inst),
        functools.partial(setattr, inst, "gauss_next", None),
    )


def _stdlib_lock_hooks() -> tuple[list[Any], list[Any], list[Any]]:
    """The standard library's hooks that only take a lock before the fork and release it
    after (``logging``: its module lock, and in the child every handler's lock renewed;
    ``concurrent.futures.thread``: its shutdown lock), as registered, by kind."""
    before: list[Any] = []
    parent: list[Any] = []
    child: list[Any] = []
    logging = sys.modules.get("logging")
    if logging is not None and hasattr(logging, "_after_at_fork_child_reinit_locks"):
        before.append(logging._acquireLock)
        parent.append(logging._releaseLock)
        child.append(logging._after_at_fork_child_reinit_locks)
    futures = sys.modules.get("concurrent.futures.thread")
    if futures is not None:
        lock = futures._global_shutdown_lock
        before.append(lock.acquire)
        parent.append(lock.release)
        child.append(lock._at_fork_reinit)
    return before, parent, child


def _known(hook: Any, known: list[Any]) -> bool:
    """Whether ``hook`` is one of ``known``: the same function, or a method bound to the same
    object (a bound method is a new object each time it is looked up). Never ``==`` on the
    hook: a user's callable decides what its ``__eq__`` says."""
    for k in known:
        if hook is k:
            return True
        if (
            type(hook) is type(k)
            and isinstance(k, (types.BuiltinMethodType, types.MethodType))
            and hook.__self__ is k.__self__
            and hook.__name__ == k.__name__
        ):
            return True
    return False


def _unraisable(hook: Any, exc: BaseException) -> None:  # pragma: no cover - in the child
    """Report a hook's exception as ``PyErr_WriteUnraisable(hook)`` does: through
    ``sys.unraisablehook``, the traceback starting in the hook."""
    tb = exc.__traceback__.tb_next if exc.__traceback__ is not None else None
    exc.__traceback__ = tb
    args = _unraisable_args_type()((type(exc), exc, tb, None, hook))
    try:
        sys.unraisablehook(args)
    except BaseException:
        sys.__unraisablehook__(args)


def _unraisable_args_type() -> type:
    """``UnraisableHookArgs`` (not exposed by name in 3.11): the type of what the interpreter
    passes ``sys.unraisablehook``, caught from a ``__del__`` that raises."""
    seen: list[Any] = []
    hook, sys.unraisablehook = sys.unraisablehook, seen.append

    class _Raises:
        def __del__(self) -> None:
            raise RuntimeError

    try:
        _Raises()
    finally:
        sys.unraisablehook = hook
    return type(seen[0])

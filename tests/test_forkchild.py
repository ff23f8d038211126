"""flowkernel.engine.forkchild: what a forked task child does between fork() and its exit,
checked on real forked processes."""

from __future__ import annotations

import os
import signal
import sys
import time

import psutil
import pytest

from flowkernel.engine import forkchild

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")


def _fork(body, **options):
    """Fork a child that runs ``forkchild.run(body, ...)``; (pid, stdout bytes, stderr bytes,
    exit code)."""
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            close = (out_r, err_r, *options.pop("close", ()))
            forkchild.run(body, out_w, err_w, close=close, **options)
        finally:
            os._exit(99)  # never back into pytest
    os.close(out_w)
    os.close(err_w)
    with os.fdopen(out_r, "rb") as out, os.fdopen(err_r, "rb") as err:
        stdout, stderr = out.read(), err.read()
    _, status = os.waitpid(pid, 0)
    return pid, stdout, stderr, os.waitstatus_to_exitcode(status)


def test_the_body_s_exit_code_and_output_reach_the_parent():
    def body():
        print("to stdout")
        print("to stderr", file=sys.stderr)
        return 3

    _, out, err, code = _fork(body)
    assert (out, err, code) == (b"to stdout\n", b"to stderr\n", 3)


def test_an_exception_is_printed_with_its_traceback_and_exits_1():
    def body():
        print("before")
        raise ValueError("broken step")

    _, out, err, code = _fork(body)
    assert code == 1 and out == b"before\n"
    assert b"Traceback" in err and b"ValueError: broken step" in err


@pytest.mark.parametrize(
    ("exc", "code", "err"),
    [(SystemExit(4), 4, b""), (SystemExit(None), 0, b""), (SystemExit("gave up"), 1, b"gave up\n")],
)
def test_system_exit_gives_its_code(exc, code, err):
    def body():
        raise exc

    assert _fork(body)[2:] == (err, code)


def test_the_child_leads_its_own_group_reads_dev_null_and_holds_no_closed_fd():
    spare_r, spare_w = os.pipe()

    def body():
        print(os.getpgrp() == os.getpid(), os.read(0, 16) == b"", flush=True)
        try:
            os.fstat(spare_w)
        except OSError:
            print("closed")
        return 0

    _, out, _, code = _fork(body, close=(spare_w,))
    os.close(spare_w)
    with os.fdopen(spare_r, "rb") as spare:
        assert spare.read() == b""  # EOF: the child did not hold the write end
    assert code == 0 and out == b"True True\nclosed\n"


def test_streams_made_before_the_fork_are_the_child_s():
    streams = forkchild.line_streams()

    def body():
        assert sys.stdout is streams[0] and sys.stderr is streams[1]
        sys.stdout.write("partial line, flushed at the exit")
        return 0

    _, out, _, code = _fork(body, streams=streams)
    assert code == 0 and out == b"partial line, flushed at the exit"


def test_undecodable_text_is_escaped_not_lost():
    _, out, _, code = _fork(lambda: print("bad \udcff byte"))
    assert code == 0 and out == b"bad \\udcff byte\n"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_child_dies_with_the_parent_it_names():
    forkchild.load_libc()
    ready_r, ready_w = os.pipe()
    middle = os.fork()
    if middle == 0:  # pragma: no cover - the parent that dies
        os.close(ready_r)
        me = os.getpid()
        if os.fork() == 0:
            forkchild.run(lambda: time.sleep(60), ready_w, ready_w, parent=me, group=None)
        os.write(ready_w, b"%d\n" % me)
        time.sleep(60)
        os._exit(0)
    os.close(ready_w)
    with os.fdopen(ready_r, "rb") as ready:
        assert int(ready.readline()) == middle
        child = psutil.Process(middle).children()[0]
        os.kill(middle, signal.SIGKILL)
        os.waitpid(middle, 0)
        try:
            child.wait(10)  # psutil.TimeoutExpired if it outlives its parent
        except psutil.NoSuchProcess:
            pass


def test_sigint_raises_keyboard_interrupt_and_sigterm_terminates_whatever_the_parent_had():
    old = (
        signal.signal(signal.SIGINT, signal.SIG_IGN),
        signal.signal(signal.SIGTERM, signal.SIG_IGN),
    )

    def body():
        print(signal.getsignal(signal.SIGINT) is signal.default_int_handler, flush=True)
        print(signal.getsignal(signal.SIGTERM) == signal.SIG_DFL, flush=True)
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
        except KeyboardInterrupt:
            print("interrupted", flush=True)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
        return 0

    try:
        _, out, _, code = _fork(body)
    finally:
        signal.signal(signal.SIGINT, old[0])
        signal.signal(signal.SIGTERM, old[1])
    assert out == b"True\nTrue\ninterrupted\n" and code == -signal.SIGTERM


# -- large values: freed after the exit, by a helper sharing the child's memory ------------------


def _live_group(pgid: int) -> list[psutil.Process]:
    """The processes of group ``pgid`` that are not zombies."""
    found = []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (ProcessLookupError, psutil.NoSuchProcess):
            continue
    return found


def _hold(nbytes: int) -> bytes:
    """A value of ``nbytes`` that the datastore would keep until the exit (saved or loaded)."""
    from flowkernel.storage import largeio

    value = b"\x01" * nbytes
    largeio.hold(value, nbytes)
    return value


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="clone(CLONE_VM): Linux")
def test_a_child_holding_large_values_leaves_them_to_a_helper_that_holds_no_pipe(monkeypatch):
    """The child's code, output and exit are its own; a helper in its process group, holding
    none of its descriptors (the parent read both pipes to their end while the helper was still
    there), keeps its memory until it is killed with the group or its sleep ends."""
    forkchild.load_libc()
    monkeypatch.setattr(forkchild, "HELPER_SLEEP_US", 60_000_000)  # (the child's copy)

    def body():
        value = _hold(forkchild.EXIT_HELPER_MIN)
        print("held", len(value))
        return 5

    pid, out, err, code = _fork(body)
    assert (out, err, code) == (f"held {forkchild.EXIT_HELPER_MIN}\n".encode(), b"", 5)
    (helper,) = _live_group(pid)
    assert helper.pid != pid
    os.killpg(pid, signal.SIGKILL)  # every other signal is blocked in it
    deadline = time.monotonic() + 30
    while _live_group(pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _live_group(pid) == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="clone(CLONE_VM): Linux")
def test_a_failing_child_holding_large_values_still_exits_1_with_its_traceback(monkeypatch):
    forkchild.load_libc()

    def body():
        _hold(forkchild.EXIT_HELPER_MIN)
        raise ValueError("broken after saving")

    pid, out, err, code = _fork(body)
    assert code == 1 and out == b""
    assert b"ValueError: broken after saving" in err
    deadline = time.monotonic() + 30  # the helper ends by itself (HELPER_SLEEP_US)
    while _live_group(pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _live_group(pid) == []


def test_a_child_holding_less_than_the_threshold_exits_alone():
    forkchild.load_libc()

    def body():
        _hold(forkchild.EXIT_HELPER_MIN - 1)
        return 0

    pid, _, _, code = _fork(body)
    assert code == 0
    assert _live_group(pid) == []  # reaped, and nothing else was ever in its group


def test_values_are_held_only_in_a_process_that_asked_for_it():
    """In-process runs, the client, tests: a value goes when its last reference goes."""
    import weakref

    from flowkernel.storage import largeio

    class Big(bytearray):
        pass

    value = Big(largeio.HOLD_MIN)
    gone = weakref.ref(value)
    largeio.hold(value, len(value))
    del value
    assert gone() is None and largeio.held_bytes() == 0


def test_only_a_task_s_own_artifacts_are_held_not_what_it_reads_through_the_client(
    tmp_path, monkeypatch
):
    """A step that reads many large artifacts of other runs through the client frees each as
    before; only the task's inputs and the artifacts it saves (alive until it ends) are held."""
    from flowkernel.datastore import FlowStore
    from flowkernel.storage import largeio

    monkeypatch.setattr(largeio, "_held", [])  # as in a task process (hold_until_exit)
    monkeypatch.setattr(largeio, "_held_bytes", 0)
    store = FlowStore(str(tmp_path), "F")
    value = b"\x02" * largeio.HOLD_MIN
    sha, size = store.save("big", value)
    assert store.load(sha, "big") == value
    assert largeio.held_bytes() == 0
    assert store.load(sha, "big", hold=True) == value
    assert store.save("big", value, sha, hold=True) == (sha, size)
    assert largeio.held_bytes() == 2 * size

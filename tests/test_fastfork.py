"""``flowkernel.engine.fastfork.Forker`` in a fresh interpreter: each condition under which the
generic after-fork work may have something to do sends that fork down ``os.fork()``'s path,
checked fork by fork (the same process forks again once the condition is gone), and the fast
child still gets every at-fork hook, a new random stream, the audit event and the
interpreter's report of a hook that raises."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from flowkernel.testing_procs import subprocess_env

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or sys.version_info[:2] != (3, 11),
    reason="the fast fork is for CPython 3.11 on Linux",
)

SCRIPT = textwrap.dedent(
    """
    import _imp, _thread, json, os, random, signal, sys, threading, time
    from flowkernel.engine import fastfork

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # as the fork server has it (no Python handler)
    AUDITS = []
    sys.addaudithook(lambda event, args: event == "os.fork" and AUDITS.append(event))
    forker = fastfork.Forker.prepare()
    assert forker is not None
    SEEN = {}
    os.register_at_fork(after_in_child=lambda: SEEN.setdefault("hook", os.getpid()))

    def fail():
        raise ValueError("hook failed")

    def fork(label):
        r, w = os.pipe()
        pid = forker.fork()
        if pid == 0:
            caught = SEEN.get("unraisable")
            os.write(w, json.dumps({
                "label": label, "how": fastfork.last, "pid": os.getpid(),
                "hook": SEEN.get("hook"), "rand": random.random(),
                "unraisable": caught, "native": threading.get_native_id(),
            }).encode())
            os._exit(0)
        os.close(w)
        os.waitpid(pid, 0)
        with os.fdopen(r) as out:
            print(out.read(), flush=True)

    def one_thread():
        while b"Threads:\\t1\\n" not in open("/proc/self/status", "rb").read():
            time.sleep(0.01)

    fork("plain")
    fork("plain again")
    _thread.start_new_thread(time.sleep, (0.3,))
    fork("a thread threading does not know")
    time.sleep(0.4); one_thread()
    fork("after that thread")
    _imp.acquire_lock()
    fork("the import lock held")
    _imp.release_lock()
    signal.signal(signal.SIGUSR1, lambda *_: None)
    fork("a Python signal handler")
    signal.signal(signal.SIGUSR1, signal.SIG_DFL)
    unstarted = threading.Thread(target=print)
    fork("a Thread not started")
    del unstarted
    sys.unraisablehook = lambda args: SEEN.setdefault(
        "unraisable", [type(args.exc_value).__name__, args.object is fail, args.err_msg])
    os.register_at_fork(after_in_child=fail)
    fork("a hook that raises")
    os.register_at_fork(before=lambda: None)
    fork("a before hook")
    print(json.dumps({"audits": len(AUDITS), "parent_rand": random.random()}))
    """
)


@pytest.fixture(scope="module")
def forks() -> tuple[dict[str, dict], dict]:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        capture_output=True,
        text=True,
        timeout=120,
        env=subprocess_env(),
    )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    return {line["label"]: line for line in lines[:-1]}, lines[-1]


def test_a_single_threaded_parent_forks_fast_and_its_children_get_every_hook(forks):
    children, parent = forks
    for label in ("plain", "plain again", "after that thread"):
        child = children[label]
        assert child["how"] == "fast"
        assert child["hook"] == child["pid"] == child["native"]  # (hook registered after prepare)
    rands = [child["rand"] for child in children.values()] + [parent["parent_rand"]]
    assert len(set(rands)) == len(rands)
    assert parent["audits"] == len(children)


@pytest.mark.parametrize(
    ("label", "how"),
    [
        ("a thread threading does not know", "os.fork: other threads run"),
        ("the import lock held", "os.fork: the import lock is held"),
        ("a Python signal handler", "a Python handler for signal 10"),
        ("a Thread not started", "threading holds other threads"),
        ("a before hook", "os.fork: a before or after_in_parent hook"),
    ],
)
def test_each_condition_that_fails_keeps_the_generic_work(forks, label, how):
    child = forks[0][label]
    assert child["how"] == how
    assert child["hook"] == child["pid"] == child["native"]


def test_a_hook_that_raises_is_reported_as_the_interpreter_does_and_the_rest_run(forks):
    child = forks[0]["a hook that raises"]
    assert child["how"] == "fast"
    assert child["unraisable"] == ["ValueError", True, None]
    assert child["hook"] == child["pid"]


def test_the_switch_turns_it_off():
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from flowkernel.engine import fastfork as f; print(f.Forker.prepare())",
        ],
        capture_output=True,
        text=True,
        env=subprocess_env(FLOWKERNEL_FAST_FORK="0"),
    )
    assert done.stdout.strip() == "None", done.stderr

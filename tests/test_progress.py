"""The live progress display: counts, ETA, on a real pseudo-terminal, and never off one."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from flowkernel.engine.progress import Progress, live_wanted

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
ESCAPE = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]")


def test_counts_follow_queued_started_retried_failed_and_cloned_tasks():
    p = Progress(started_at=100.0)
    p.queued("start")
    p.started("start")
    p.finished("start", ok=True)
    p.queued("body", 4)
    for _ in range(3):
        p.started("body")
    p.finished("body", ok=False, will_retry=True)  # an attempt failed, a retry follows
    p.started("body")
    p.finished("body", ok=True)
    p.finished("body", ok=False)  # failed for good
    p.finished("body", ok=True, cloned=True)  # resume: copied, never ran
    body = p.steps["body"]
    assert (body.total, body.running, body.done, body.failed) == (4, 1, 2, 1)
    assert list(p.steps) == ["start", "body"]
    totals = p.totals
    assert (totals.total, totals.done, totals.failed) == (5, 3, 1)
    assert p.eta(now=104.0) == pytest.approx(1.0)  # 4 of 5 ended in 4 s: 1 left, 1 s


def test_eta_is_unknown_before_a_task_ended():
    p = Progress(started_at=0.0)
    p.queued("start")
    assert p.eta(now=10.0) is None


def test_no_live_display_when_quiet_or_not_a_terminal(monkeypatch):
    monkeypatch.delenv("FLOWKERNEL_PROGRESS", raising=False)
    assert not live_wanted(quiet=False)  # pytest captures stdout: not a TTY
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True, raising=False)
    monkeypatch.setenv("TERM", "xterm")
    assert live_wanted(quiet=False)
    assert not live_wanted(quiet=True)
    monkeypatch.setenv("FLOWKERNEL_PROGRESS", "0")
    assert not live_wanted(quiet=False)
    monkeypatch.setenv("FLOWKERNEL_PROGRESS", "1")
    monkeypatch.setenv("TERM", "dumb")
    assert not live_wanted(quiet=False)


def run_on_a_terminal(args: list[str], cwd: Path, **env: str) -> tuple[int, bytes]:
    """Run ``flow ARGS`` with stdout and stderr on a pseudo-terminal; (exit code, all output)."""
    import pty

    master, slave = pty.openpty()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWKERNEL_")}
    full_env.update(TERM="xterm-256color", COLUMNS="120", **env)
    cmd = [sys.executable, "-m", "flowkernel.cli", *args]
    proc = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, cwd=cwd, env=full_env)
    os.close(slave)
    out = b""
    while True:
        try:
            chunk = os.read(master, 1 << 16)
        except OSError:  # EIO once the child side is closed
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    return proc.wait(timeout=60), out


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal (POSIX)")
def test_a_run_on_a_terminal_shows_live_counts_and_streams_task_output(tmp_path):
    code, out = run_on_a_terminal(["run", str(EXAMPLES / "fanout.py"), "--count", "6"], tmp_path)
    text = ESCAPE.sub(b"", out).decode()
    assert code == 0, text
    assert b"\x1b[" in out  # drawn with cursor movements
    for n in range(1, 7):
        assert f"{n}^2 = {n * n}" in text  # task output still streams
    assert re.search(r"square +━+ +6/6 done +0 running", text), text
    assert re.search(r"FanoutFlow/\d+ +9/9 tasks done +0 running +elapsed 00:0\d", text), text
    assert "Task is starting" not in text  # per-task chatter is what the counts replace
    assert text.rstrip().endswith("Done!")


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal (POSIX)")
def test_quiet_or_progress_off_on_a_terminal_prints_plain_lines(tmp_path):
    for extra, env in ((["--quiet"], {}), ([], {"FLOWKERNEL_PROGRESS": "0"})):
        args = ["run", str(EXAMPLES / "fanout.py"), "--count", "2", *extra]
        code, out = run_on_a_terminal(args, tmp_path, **env)
        assert code == 0, out
        assert b"tasks done" not in out and b"\x1b[" not in out, (extra, env)
        assert b"2^2 = 4" in out


def test_output_captured_through_pipes_has_no_display(tmp_path):
    """What Runner and notebooks see: a pipe, so the plain line output, unchanged."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "flowkernel.cli",
            "run",
            str(EXAMPLES / "fanout.py"),
            "--count",
            "2",
        ],
        capture_output=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert result.returncode == 0
    assert b"\x1b[" not in result.stdout + result.stderr
    assert b"Task is starting." in result.stdout and b"tasks done" not in result.stdout


def test_a_terminal_that_goes_away_stops_the_display_not_the_run():
    """EIO/EPIPE while drawing: the display stops, the streams come back, later console
    writes fail as on a closed pipe (the runtime then drops its console sinks)."""
    import contextlib

    from flowkernel.engine.progress import LiveProgress, _Buffer

    class GoneTerminal:
        console = contextlib.nullcontext()

        def refresh(self):
            raise BrokenPipeError

    out, err = sys.stdout, sys.stderr
    display = LiveProgress(title="X/1")
    buffer = _Buffer([])
    display._saved = (out, err)
    display._live = GoneTerminal()
    sys.stdout = sys.stderr = buffer
    try:
        display.tick()
    finally:
        restored = (sys.stdout, sys.stderr)
        sys.stdout, sys.stderr = out, err
    assert restored == (out, err) and not display.live
    with pytest.raises(BrokenPipeError):
        buffer.write("late line\n")
    display.stop()  # nothing left to take down

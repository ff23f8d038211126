"""``flow report``: the page's content, and the page as a real browser shows it.

The browser tests drive Debian's headless Chromium over the DevTools protocol on a pipe
(``--remote-debugging-pipe``): they load the report from a file, collect console messages and
uncaught exceptions, measure the graph and the timeline, and take a screenshot. ``.ci/run``
installs Chromium; without it (a developer machine) they skip saying so, and in CI they fail.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

FLOW = """\
import os

from flowkernel import FlowSpec, Parameter, retry, step


class ReportFlow(FlowSpec):
    n = Parameter("n", default=5)

    @step
    def start(self):
        self.items = list(range(self.n))
        self.table = {"a": [1, 2, 3]}
        self.next(self.work, foreach="items")

    @retry(times=1)
    @step
    def work(self):
        print("working on", self.input)
        marker = os.path.join(os.environ["MARKERS"], str(self.input))
        if self.input == 2 and not os.path.exists(marker):
            open(marker, "w").close()
            raise RuntimeError("flaky first attempt")
        self.square = self.input**2
        self.next(self.join)

    @step
    def join(self, inputs):
        self.total = sum(i.square for i in inputs)
        self.next(self.boom)

    @step
    def boom(self):
        raise ValueError("the report shows this traceback")
        self.next(self.end)

    @step
    def end(self):
        pass
"""


def flow(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "flowkernel.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
        env={**os.environ, **env},
    )


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> dict[str, Any]:
    """A failed run (a foreach with one retried task, a failing step) and its report."""
    base = tmp_path_factory.mktemp("report")
    (base / "markers").mkdir()
    (base / "report_flow.py").write_text(FLOW)
    ran = flow("run", "report_flow.py", cwd=base, MARKERS=str(base / "markers"))
    assert ran.returncode == 1, ran.stdout + ran.stderr
    wrote = flow("report", "ReportFlow", "-o", "out/report.html", cwd=base)
    assert wrote.returncode == 0, wrote.stderr
    path = base / "out" / "report.html"
    assert wrote.stdout.strip() == f"Report written to {path}"
    run_id = (base / ".flowkernel" / "ReportFlow" / "latest_run").read_text()
    return {"base": base, "path": path, "html": path.read_text(), "run_id": run_id}


def test_the_page_needs_nothing_but_itself(report):
    html = report["html"]
    assert "<script" not in html and "<link" not in html and "src=" not in html
    urls = set(re.findall(r"https?://[^\"' )]+", html))
    assert urls <= {"http://www.w3.org/2000/svg"}, urls  # the SVG namespace, not a fetch


def test_the_page_shows_graph_timeline_steps_failures_artifacts_and_logs(report):
    html = report["html"]
    for step, status in (("start", "ok"), ("work", "ok"), ("boom", "failed"), ("end", "not run")):
        assert f'data-step="{step}" data-status="{status}"' in html
    bars = re.findall(
        r'class="bar" data-task="([^"]+)" data-attempt="(\d)" data-status="(\w+)"', html
    )
    assert len(bars) == 9  # start, 5 work tasks + 1 retry, join, boom
    retried = [b for b in bars if b[2] == "retried"]
    assert len(retried) == 1 and retried[0][1] == "0"
    assert any(b[0] == retried[0][0] and b[1] == "1" and b[2] == "ok" for b in bars)
    assert "ValueError: the report shows this traceback" in html
    assert re.search(r"report_flow.py&quot;, line \d+, in boom", html)  # the traceback
    assert "RuntimeError: flaky first attempt" in html
    assert "<td>table</td><td>dict</td>" in html and "<td>items</td><td>list</td>" in html
    assert "<td>square</td><td>int</td>" in html
    assert "working on 3" in html
    assert f"ReportFlow/{report['run_id']}" in html


def test_report_of_an_unknown_run_says_where_it_looked(report):
    result = flow("report", "NoSuchFlow/123", cwd=report["base"])
    assert result.returncode == 1
    assert f"under {report['base'] / '.flowkernel'}" in result.stderr


def test_artifact_types_come_from_the_pickle_without_loading_it():
    import collections
    import pickle

    from flowkernel_report.model import pickle_type

    cases = [
        ("x", "str"),
        (3, "int"),
        (2.5, "float"),
        (None, "NoneType"),
        (True, "bool"),
        (b"b", "bytes"),
        ((1, 2), "tuple"),
        (frozenset({1}), "frozenset"),
        (collections.OrderedDict(a=1), "collections.OrderedDict"),
    ]
    for value, expected in cases:
        assert pickle_type(pickle.dumps(value, protocol=4)) == expected, value
    assert pickle_type(pickle.dumps([1], protocol=4)) == "list"
    assert pickle_type(pickle.dumps({"a": 1}, protocol=4)) == "dict"
    assert pickle_type(pickle.dumps(Path("/x"), protocol=4)).endswith("PosixPath")
    assert pickle_type(pickle.dumps([(1, 2)] * 50_000, protocol=4)[:1000]) == "list"  # cut short
    assert pickle_type(b"\x80\x04garbage") == "?"


# -- in a real browser ----------------------------------------------------------------------

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-pipe",
]


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    reason = "Chromium is not installed (apt-get install chromium; .ci/run installs it)"
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


class Browser:
    """Headless Chromium driven over the DevTools protocol on a pipe (fds 3 and 4)."""

    def __init__(self) -> None:
        self.profile = tempfile.mkdtemp(prefix="fk-chromium-")
        cmd_r, self.cmd_w = os.pipe()
        self.resp_r, resp_w = os.pipe()
        # above 2 and clear of 3/4, so the dup2s in the child cannot clobber each other
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (cmd_r, resp_w)]

        def pipes_on_3_and_4() -> None:
            os.dup2(high[0], 3)
            os.dup2(high[1], 4)

        args = [_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={self.profile}", "about:blank"]
        self.proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            close_fds=False,
            preexec_fn=pipes_on_3_and_4,
        )
        for fd in (cmd_r, resp_w, *high):
            os.close(fd)
        self.next_id = 0
        self.pending = b""
        self.events: list[dict[str, Any]] = []
        self.session: str | None = None

    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self.pending:
            if time.time() > deadline:
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(self.resp_r, 1 << 16)
            if not chunk:
                raise RuntimeError("Chromium closed the DevTools pipe")
            self.pending += chunk
        raw, self.pending = self.pending.split(b"\0", 1)
        return json.loads(raw)

    def call(self, method: str, timeout: float = 30.0, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        message: dict[str, Any] = {"id": self.next_id, "method": method, "params": params}
        if self.session and not method.startswith(("Target.", "Browser.")):
            message["sessionId"] = self.session
        os.write(self.cmd_w, json.dumps(message).encode() + b"\0")
        deadline = time.time() + timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.time() + timeout
        for event in self.events:
            if event.get("method") == method:
                return event
        while True:
            event = self._read_message(deadline)
            self.events.append(event)
            if event.get("method") == method:
                return event

    def open(self, url: str) -> None:
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)[
            "sessionId"
        ]
        self.call("Runtime.enable")
        self.call("Log.enable")
        self.call("Page.enable")
        self.call("Emulation.setDeviceMetricsOverride", width=1280, height=1600,
                  deviceScaleFactor=1, mobile=False)  # fmt: skip
        self.events.clear()
        self.call("Page.navigate", url=url)
        self.wait_for("Page.loadEventFired")

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    def problems(self) -> list[str]:
        """Console errors and warnings, uncaught exceptions, error log entries so far."""
        found = []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in (
                "error",
                "warning",
                "assert",
            ):
                found.append(f"console.{params['type']}: {params.get('args')}")
            elif method == "Runtime.exceptionThrown":
                found.append(f"exception: {params.get('exceptionDetails', {}).get('text')}")
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                found.append(f"log: {params['entry'].get('text')}")
        return found

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=10)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self.cmd_w)
        os.close(self.resp_r)
        shutil.rmtree(self.profile, ignore_errors=True)


@pytest.fixture(scope="module")
def browser():
    b = Browser()
    yield b
    b.close()


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_the_report_renders_in_chromium_with_graph_and_timeline_and_no_errors(report, browser):
    browser.open(report["path"].as_uri())
    assert browser.problems() == []
    shape = browser.evaluate(
        """JSON.stringify((() => {
            const box = (sel) => { const r = document.querySelector(sel).getBoundingClientRect();
                                   return [r.width, r.height]; };
            return {graph: box('#graph'), timeline: box('#timeline'), steps: box('#steps'),
                    nodes: document.querySelectorAll('#graph g.node').length,
                    edges: document.querySelectorAll('#graph .edge').length,
                    bars: [...document.querySelectorAll('#timeline rect.bar')]
                          .filter(r => r.getBoundingClientRect().width >= 2).length,
                    title: document.title};
        })())"""
    )
    shape = json.loads(shape)
    assert shape["nodes"] == 5 and shape["edges"] == 4, shape
    assert shape["bars"] == 9, shape  # every attempt drawn, visibly wide
    for part in ("graph", "timeline", "steps"):
        width, height = shape[part]
        assert width > 100 and height > 50, (part, shape)
    assert shape["title"].startswith(f"ReportFlow/{report['run_id']}")
    shot = base64.b64decode(browser.call("Page.captureScreenshot", format="png")["data"])
    assert _png_size(shot) == (1280, 1600)
    assert len(shot) > 20_000  # a blank page compresses to a few KB
    (report["base"] / "out" / "report.png").write_bytes(shot)


def test_the_browser_check_does_see_console_errors(browser, tmp_path):
    """The check above can fail: a page that logs an error and throws is caught."""
    bad = tmp_path / "bad.html"
    bad.write_text(
        "<!DOCTYPE html><html><body><p>x</p>"
        "<script>console.error('broken'); undefined_function();</script></body></html>"
    )
    browser.open(bad.as_uri())
    problems = browser.problems()
    assert any("console.error" in p and "broken" in p for p in problems), problems
    assert any(p.startswith("exception") for p in problems), problems

"""Does the live progress display slow a run? Wall time of a run on a terminal (a pty), with the
display (the default on a TTY) and without it (``FLOWKERNEL_PROGRESS=0``: plain lines).

    .venv/bin/python bench/progress.py --runs 5 [--n 1000] [--lines 0]

``--lines K`` makes every foreach task print K lines (task output streams above the display).
Prints the median seconds of each mode and the ratio.
"""

from __future__ import annotations

import argparse
import os
import pty
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
FLOW = """\
from flowkernel import FlowSpec, Parameter, step


class ProgressBench(FlowSpec):
    n = Parameter("n", default=1000, type=int)
    lines = Parameter("lines", default=0, type=int)

    @step
    def start(self):
        self.items = list(range(self.n))
        self.next(self.body, foreach="items")

    @step
    def body(self):
        for i in range(self.lines):
            print(f"task {self.input} line {i}")
        self.next(self.join)

    @step
    def join(self, inputs):
        self.next(self.end)

    @step
    def end(self):
        pass
"""


def timed_run(flow: Path, root: str, n: int, lines: int, live: bool) -> tuple[float, int]:
    """(seconds, bytes written to the terminal) of one `flow run` on a pty."""
    master, slave = pty.openpty()
    env = dict(os.environ, FLOWKERNEL_PROGRESS="1" if live else "0", TERM="xterm-256color")
    flow_bin = str(Path(sys.executable).parent / "flow")
    cmd = [flow_bin, "--datastore-root", root, "run", str(flow), "--n", str(n)]
    cmd += ["--lines", str(lines), "--max-workers", "2", "--max-num-splits", str(n)]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, env=env)
    os.close(slave)
    size, tail = 0, b""
    while True:
        try:
            chunk = os.read(master, 1 << 16)
        except OSError:  # EIO: the other side closed
            break
        if not chunk:
            break
        size += len(chunk)
        tail = (tail + chunk)[-2000:]
    code = proc.wait()
    elapsed = time.perf_counter() - start
    os.close(master)
    if code != 0:
        raise SystemExit(f"run failed with exit code {code}:\n{tail.decode(errors='replace')}")
    return elapsed, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--lines", type=int, default=0)
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        flow = Path(tmp) / "progress_bench.py"
        flow.write_text(FLOW)
        times: dict[bool, list[float]] = {True: [], False: []}
        sizes: dict[bool, int] = {}
        timed_run(flow, tmp, 10, 0, True)  # warm-up
        for _ in range(opts.runs):
            for live in (False, True):  # interleaved: load changes hit both alike
                seconds, sizes[live] = timed_run(flow, tmp, opts.n, opts.lines, live)
                times[live].append(seconds)
    plain, live = statistics.median(times[False]), statistics.median(times[True])
    print(
        f"{opts.n} tasks, {opts.lines} lines each, {opts.runs} runs, load {os.getloadavg()[0]:.1f}"
    )
    print(f"plain lines: {plain:.2f} s median ({sizes[False]} bytes to the terminal)")
    print(f"live display: {live:.2f} s median ({sizes[True]} bytes to the terminal)")
    print(f"live / plain: {live / plain:.3f}")


if __name__ == "__main__":
    main()

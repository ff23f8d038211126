"""Benchmark flowkernel against Metaflow on the same flows, side by side, in one invocation.

    .venv/bin/python bench/run_bench.py [--metaflow-python /tmp/mf-venv/bin/python]
                                        [--repeats 3] [--quick] [--only NAME ...]

Each flow in bench/flows/ is run with ``flow run`` (as ``python -m flowkernel.cli run``) and,
when ``--metaflow-python`` is given, with Metaflow (the same file with ``from flowkernel
import`` replaced by ``from metaflow import``), flowkernel first, ``--repeats`` times each;
figures are medians. Every run happens in
a fresh temporary directory. Memory: the controller's own peak is its VmHWM (read every 20 ms);
the peak of any single process in the tree is the larger of the per-process RSS sampled every
20 ms (psutil) and the ``ru_maxrss`` that ``wait4`` reports for the whole tree.

Per-task overhead = (wall(foreach, N tasks) - wall(start_end)) / N. Stdlib + psutil only.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

FLOWS = Path(__file__).resolve().parent / "flows"
MB = 1_000_000


def flowkernel_cmd(flow: Path, args: list[str]) -> list[str]:
    return [sys.executable, "-m", "flowkernel.cli", "run", str(flow), "--quiet", *args]


def metaflow_cmd(python: str, flow: Path, args: list[str]) -> list[str]:
    top = ["--no-pylint", "--quiet", "--datastore", "local", "--metadata", "local"]
    return [python, str(flow), *top, "--environment", "local", "run", *args]


class Sampler(threading.Thread):
    """Polls a process tree every ``interval`` s: controller VmHWM, largest single-process RSS."""

    def __init__(self, pid: int, tree: bool, interval: float = 0.02):
        super().__init__(daemon=True)
        self.root = psutil.Process(pid)
        self.tree, self.interval = tree, interval
        self.controller = 0  # bytes
        self.single = 0
        self.stop = threading.Event()

    def run(self) -> None:
        status = f"/proc/{self.root.pid}/status"
        while not self.stop.wait(self.interval):
            try:
                with open(status) as fh:
                    for line in fh:
                        if line.startswith("VmHWM:"):
                            self.controller = max(self.controller, int(line.split()[1]) * 1024)
                procs = self.root.children(recursive=True) if self.tree else []
            except (OSError, psutil.Error):
                continue
            for proc in procs:
                try:
                    self.single = max(self.single, proc.memory_info().rss)
                except psutil.Error:
                    pass


def run_once(cmd: list[str], flow: Path, mem_tree: bool, env: dict[str, str]) -> dict:
    """Run ``cmd`` in a fresh temp dir holding a copy of ``flow``; wall time and memory."""
    work = Path(tempfile.mkdtemp(prefix="fkbench."))
    try:
        text = flow.read_text()
        if "--no-pylint" in cmd:  # the Metaflow variant
            text = text.replace("from flowkernel import", "from metaflow import")
        local = work / flow.name
        local.write_text(text)
        cmd = [str(local) if c == str(flow) else c for c in cmd]
        env = {**env, "METAFLOW_HOME": str(work / "mfhome")}
        with open(work / "out.log", "wb") as log:
            start = time.perf_counter()
            proc = subprocess.Popen(cmd, cwd=work, stdout=log, stderr=subprocess.STDOUT, env=env)
            sampler = Sampler(proc.pid, mem_tree)
            sampler.start()
            _, status, usage = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - start
            proc.returncode = os.waitstatus_to_exitcode(status)
        sampler.stop.set()
        sampler.join()
        if proc.returncode != 0:
            tail = (work / "out.log").read_text(errors="replace")[-2000:]
            sys.exit(f"FAILED ({proc.returncode}): {' '.join(cmd)}\n{tail}")
        single = max(sampler.single, sampler.controller, usage.ru_maxrss * 1024)
        return {"wall": wall, "controller": sampler.controller, "single": single}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def median_run(cmd, flow, repeats, mem_tree, env) -> dict:
    runs = [run_once(cmd, flow, mem_tree, env) for _ in range(repeats)]
    out = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    out["walls"] = [r["wall"] for r in runs]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--metaflow-python", help="python of a venv with Metaflow 2.19 installed")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="small sizes, one repeat (smoke run)")
    ap.add_argument("--only", nargs="*", default=None, help="start_end foreach big memory")
    ap.add_argument(
        "--metaflow-foreach-repeats",
        type=int,
        default=1,
        help="repeats of the N-task foreach on Metaflow (each takes minutes)",
    )
    ap.add_argument(
        "--metaflow-memory",
        action="store_true",
        help="also run the 10,000-task foreach on Metaflow (slow: ~20 min)",
    )
    opts = ap.parse_args()
    repeats = 1 if opts.quick else opts.repeats
    n, big_mb, n_mem = (100, 20, 1000) if opts.quick else (1000, 200, 10_000)
    want = set(opts.only or ["start_end", "foreach", "big", "memory"])
    env = {**os.environ, "USER": os.environ.get("USER") or "bench", "PYTHONUNBUFFERED": "1"}
    mf = opts.metaflow_python

    def both(name, flow, args, mem_tree=False, on_mf=True, mf_repeats=None):
        flow = FLOWS / flow
        res = {}
        print(f"  {name}: flowkernel ...", end="", flush=True)
        res["fk"] = median_run(flowkernel_cmd(flow, args), flow, repeats, mem_tree, env)
        print(f" {fmt_walls(res['fk'])}", end="", flush=True)
        if mf and on_mf:
            print(" | metaflow ...", end="", flush=True)
            mf_cmd = metaflow_cmd(mf, flow, args)
            res["mf"] = median_run(mf_cmd, flow, mf_repeats or repeats, mem_tree, env)
            print(f" {fmt_walls(res['mf'])}", end="", flush=True)
        print()
        return res

    print(
        f"machine: {os.cpu_count()} cpus, {platform.platform()}, python {platform.python_version()}"
    )
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(
        f"sizes: foreach N={n}, artifact {big_mb} MB, memory foreach N={n_mem}; repeats={repeats}"
    )
    splits = ["--max-num-splits", str(max(n, n_mem) + 1)]
    r: dict[str, dict] = {}
    if want & {"start_end", "foreach"}:
        r["start_end"] = both("start_end", "start_end.py", [])
    if "foreach" in want:
        args = ["--max-workers", "2", *splits, "--n", str(n)]
        mf_repeats = min(repeats, opts.metaflow_foreach_repeats)
        r["foreach"] = both("foreach", "foreach_1000.py", args, mf_repeats=mf_repeats)
    if "big" in want:
        r["big"] = both("big_artifact", "big_artifact.py", ["--size_mb", str(big_mb)], True)
    if "memory" in want:
        args = ["--max-workers", "2", *splits, "--n", str(n_mem)]
        r["memory"] = both("memory", "foreach_1000.py", args, on_mf=opts.metaflow_memory)

    rows = []  # (metric, flowkernel, metaflow, ratio, target, verdict)
    if "start_end" in r:
        fk, m = r["start_end"]["fk"]["wall"], get(r, "start_end", "wall")
        rows.append(ratio_row("start->end wall (s)", fk, m, 3, "{:.3f}"))
    if "foreach" in r:
        base = r["start_end"]
        fk = (r["foreach"]["fk"]["wall"] - base["fk"]["wall"]) / n * 1000
        m = None
        if "mf" in r["foreach"]:
            m = (r["foreach"]["mf"]["wall"] - base["mf"]["wall"]) / n * 1000
        rows.append(
            ratio_row(
                f"foreach {n}: wall (s)",
                r["foreach"]["fk"]["wall"],
                get(r, "foreach", "wall"),
                None,
                "{:.2f}",
            )
        )
        rows.append(ratio_row("per-task overhead (ms)", fk, m, 50, "{:.2f}"))
    if "big" in r:
        fk, m = r["big"]["fk"]["wall"], get(r, "big", "wall")
        rows.append(ratio_row(f"{big_mb} MB artifact wall (s)", fk, m, 5, "{:.2f}"))
        fk_single, m_single = r["big"]["fk"]["single"] / MB, get(r, "big", "single")
        limit = 2 * big_mb
        rows.append(
            (
                f"{big_mb} MB: peak RSS, any process (MB)",
                f"{fk_single:.0f}",
                f"{m_single / MB:.0f}" if m_single else "-",
                "-",
                f"< {limit}",
                verdict(fk_single < limit),
            )
        )
    if "memory" in r:
        fk_c = r["memory"]["fk"]["controller"] / MB
        m_c = get(r, "memory", "controller")
        rows.append(
            (
                f"foreach {n_mem}: controller RSS (MB)",
                f"{fk_c:.0f}",
                f"{m_c / MB:.0f}" if m_c else "-",
                "-",
                "< 150",
                verdict(fk_c < 150),
            )
        )
        rows.append(
            ratio_row(
                f"foreach {n_mem}: wall (s)",
                r["memory"]["fk"]["wall"],
                get(r, "memory", "wall"),
                None,
                "{:.1f}",
            )
        )
    print_table(rows)
    print(f"\nload average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def get(r: dict, bench: str, key: str) -> float | None:
    return r[bench]["mf"][key] if "mf" in r[bench] else None


def ratio_row(metric: str, fk: float, mf: float | None, target: float | None, f: str) -> tuple:
    """Ratio = Metaflow / flowkernel (higher is better for flowkernel)."""
    ratio = mf / fk if mf is not None and fk > 0 else None
    tgt = f">= {target}x" if target else "-"
    if target is None:
        ok = "-"
    elif ratio is None:
        ok = "n/a"
    else:
        ok = verdict(ratio >= target)
    return (
        metric,
        f.format(fk),
        f.format(mf) if mf is not None else "-",
        f"{ratio:.1f}x" if ratio is not None else "-",
        tgt,
        ok,
    )


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def fmt_walls(res: dict) -> str:
    return "[" + " ".join(f"{w:.2f}s" for w in res["walls"]) + "]"


def print_table(rows: list[tuple]) -> None:
    head = ("metric", "flowkernel", "metaflow", "ratio", "target", "")
    widths = [max(len(str(x[i])) for x in [head, *rows]) for i in range(len(head))]
    print()
    for row in [head, tuple("-" * w for w in widths), *rows]:
        print(
            "  ".join(
                str(c).ljust(w) if i == 0 else str(c).rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            ).rstrip()
        )


if __name__ == "__main__":
    main()

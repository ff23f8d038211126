"""Benchmark flowkernel against Metaflow on the same flows, side by side, in one invocation.

    .venv/bin/python bench/run_bench.py [--metaflow-python /tmp/mf-venv/bin/python]
                                        [--baseline-python OTHER/.venv/bin/python]
                                        [--isolation pool ...] [--syscalls]
                                        [--repeats 3] [--quick] [--only NAME ...]

Each flow in bench/flows/ is run with ``flow run`` (as ``python -m flowkernel.cli run``) and,
when ``--metaflow-python`` is given, with Metaflow (the same file with ``from flowkernel
import`` replaced by ``from metaflow import``). ``--baseline-python`` adds another flowkernel
install (another checkout's venv: before/after a change) and ``--isolation MODE`` a run of this
flowkernel with ``--isolation MODE``. The engines alternate within every repeat (A, B, A, B...),
so a change of the machine's load hits them all alike; figures are medians of ``--repeats``.
Every run happens in a fresh temporary directory. Memory: the controller's own peak is its
VmHWM (read every 20 ms); the peak of any single process in the tree is the larger of the
per-process RSS sampled every 20 ms (psutil) and the ``ru_maxrss`` that ``wait4`` reports for the
whole tree. CPU time and page faults are ``wait4``'s for the whole tree.

Per-task overhead = (wall(foreach, N tasks) - wall(start_end)) / N; the same difference of user
time, system time and minor page faults gives their per-task figures. The fork floor
(``bench/fork_floor.py``: fork the warm controller and exit, two at a time) is measured in the
same run with each flowkernel install, and per-task overhead is given as a multiple of it.
``--syscalls`` counts system calls per task with ``strace -f -c`` (a separate, slower pass).
Stdlib + psutil only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
FLOWS = HERE / "flows"
MB = 1_000_000


@dataclass(frozen=True)
class Engine:
    """One way to run the bench flows: a flowkernel install (``kind="fk"``) or Metaflow."""

    label: str
    kind: str  #: "fk" or "mf"
    python: str
    extra: tuple[str, ...] = ()  #: more ``flow run`` options (``--isolation pool``)

    def command(self, flow: Path, args: list[str]) -> list[str]:
        if self.kind == "mf":
            top = ["--no-pylint", "--quiet", "--datastore", "local", "--metadata", "local"]
            return [self.python, str(flow), *top, "--environment", "local", "run", *args]
        run = [self.python, "-m", "flowkernel.cli", "run", str(flow), "--quiet"]
        return [*run, *args, *self.extra]


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
    """Run ``cmd`` in a fresh temp dir holding a copy of ``flow``; wall time, memory, CPU."""
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
        return {
            "wall": wall,
            "controller": sampler.controller,
            "single": single,
            "user": usage.ru_utime,
            "sys": usage.ru_stime,
            "faults": usage.ru_minflt,
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


def medians(runs: list[dict]) -> dict:
    out = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    out["walls"] = [r["wall"] for r in runs]
    return out


def floor_once(engine: Engine, n: int, write: bool) -> dict:
    """One run of bench/fork_floor.py with ``engine``'s flowkernel (per-child figures)."""
    cmd = [engine.python, str(HERE / "fork_floor.py"), str(FLOWS / "foreach_1000.py")]
    cmd += ["--n", str(n), "--concurrency", "2", *(["--write"] if write else [])]
    with tempfile.TemporaryDirectory(prefix="fkfloor.") as work:
        out = subprocess.run(cmd, cwd=work, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        sys.exit(f"FAILED: {' '.join(cmd)}\n{out.stderr[-2000:]}")
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res["wall"] = res["wall_ms"]  # medians() keeps the walls list from "wall"
    return res


def syscalls_per_task(engine: Engine, n: int, env: dict[str, str]) -> dict[str, float]:
    """System calls per task (``strace -f -c``): (foreach of n tasks - start_end) / n."""
    counts = []
    for flow, args in (
        ("start_end.py", []),
        ("foreach_1000.py", ["--max-workers", "2", "--max-num-splits", str(n + 1), "--n", str(n)]),
    ):
        with tempfile.NamedTemporaryFile(prefix="fkstrace.", suffix=".txt") as out:
            strace = ["strace", "-f", "-c", "-o", out.name]
            run_once([*strace, *engine.command(FLOWS / flow, args)], FLOWS / flow, False, env)
            counts.append(parse_strace(Path(out.name).read_text()))
    names = set(counts[0]) | set(counts[1])
    per = {k: (counts[1].get(k, 0) - counts[0].get(k, 0)) / n for k in names}
    return {k: v for k, v in per.items() if v >= 0.5}


def parse_strace(text: str) -> dict[str, int]:
    calls: dict[str, int] = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 5 and re.fullmatch(r"[0-9.]+", fields[0]) and fields[-1] != "total":
            calls[fields[-1]] = int(fields[3])
    return calls


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--metaflow-python", help="python of a venv with Metaflow 2.19 installed")
    ap.add_argument("--baseline-python", help="python of another flowkernel venv (before/after)")
    ap.add_argument(
        "--isolation",
        nargs="*",
        default=[],
        help="also run the foreach with `flow run --isolation MODE` (e.g. pool)",
    )
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="small sizes, one repeat (smoke run)")
    ap.add_argument("--only", nargs="*", default=None, help="start_end foreach floor big memory")
    ap.add_argument("--n", type=int, default=None, help="foreach size (default 1000)")
    ap.add_argument(
        "--syscalls",
        type=int,
        nargs="?",
        const=200,
        default=0,
        help="count system calls per task with strace -f -c on a foreach of N (200) tasks",
    )
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
    n = opts.n or n
    want = set(opts.only or ["start_end", "foreach", "floor", "big", "memory"])
    if "foreach" in want:
        want |= {"start_end", "floor"}
    env = {**os.environ, "USER": os.environ.get("USER") or "bench", "PYTHONUNBUFFERED": "1"}
    fk = Engine("flowkernel", "fk", sys.executable)
    engines = [fk]
    if opts.baseline_python:
        engines.append(Engine("baseline", "fk", opts.baseline_python))
    variants = [Engine(f"flowkernel --isolation {m}", "fk", fk.python, ("--isolation", m))
                for m in opts.isolation]  # fmt: skip
    mf = Engine("metaflow", "mf", opts.metaflow_python) if opts.metaflow_python else None

    def measure(name, flow, args, engs, mem_tree=False, reps=None, mf_reps=None):
        """Run ``flow`` on every engine of ``engs`` (and Metaflow), alternating, repeated."""
        flow = FLOWS / flow
        runs: dict[str, list[dict]] = {e.label: [] for e in engs}
        todo = list(engs) + ([mf] if mf is not None and mf_reps != 0 else [])
        print(f"  {name}:", end="", flush=True)
        for rep in range(reps or repeats):
            for e in todo:
                if e is mf and rep >= (mf_reps or repeats):
                    continue
                runs.setdefault(e.label, []).append(
                    run_once(e.command(flow, args), flow, mem_tree, env)
                )
                print(f" {e.label[:2]}={runs[e.label][-1]['wall']:.2f}s", end="", flush=True)
        print()
        return {label: medians(rs) for label, rs in runs.items() if rs}

    def floor(write: bool) -> dict:
        fks = [e for e in engines if e.kind == "fk"]
        runs: dict[str, list[dict]] = {e.label: [] for e in fks}
        print(f"  fork floor{' + write' if write else ''}:", end="", flush=True)
        for _ in range(repeats):
            for e in fks:
                runs[e.label].append(floor_once(e, n, write))
                print(f" {e.label[:2]}={runs[e.label][-1]['wall_ms']:.2f}ms", end="", flush=True)
        print()
        return {label: medians(rs) for label, rs in runs.items()}

    print(
        f"machine: {os.cpu_count()} cpus, {platform.platform()}, python {platform.python_version()}"
    )
    print(f"load average at start: {load()}")
    print(
        f"sizes: foreach N={n}, artifact {big_mb} MB, memory foreach N={n_mem}; repeats={repeats}"
    )
    splits = ["--max-num-splits", str(max(n, n_mem) + 1)]
    r: dict[str, dict] = {}
    fe_args = ["--max-workers", "2", *splits, "--n", str(n)]
    if "floor" in want:
        r["floor"] = floor(False)
        r["floor_write"] = floor(True)
    if "start_end" in want:
        r["start_end"] = measure("start_end", "start_end.py", [], engines + variants)
    if "foreach" in want:
        mf_repeats = min(repeats, opts.metaflow_foreach_repeats)
        r["foreach"] = measure(
            "foreach", "foreach_1000.py", fe_args, engines + variants, mf_reps=mf_repeats
        )
    if "big" in want:
        r["big"] = measure("big_artifact", "big_artifact.py", ["--size_mb", str(big_mb)], engines,
                           mem_tree=True)  # fmt: skip
    if "memory" in want:
        args = ["--max-workers", "2", *splits, "--n", str(n_mem)]
        mf_reps = None if opts.metaflow_memory else 0
        r["memory"] = measure("memory", "foreach_1000.py", args, engines, mf_reps=mf_reps)
    print(f"load average after the runs: {load()}")

    if "foreach" in r:
        print_per_task(r, n, [e.label for e in engines + variants] + (["metaflow"] if mf else []))
    rows = []  # (metric, flowkernel, metaflow, ratio, target, verdict)
    if "start_end" in r:
        fk_w, m = r["start_end"]["flowkernel"]["wall"], get(r, "start_end", "wall")
        rows.append(ratio_row("start->end wall (s)", fk_w, m, 3, "{:.3f}"))
    if "foreach" in r:
        fk_t, m = per_task(r, "flowkernel", n), per_task(r, "metaflow", n)
        rows.append(
            ratio_row(
                f"foreach {n}: wall (s)",
                r["foreach"]["flowkernel"]["wall"],
                get(r, "foreach", "wall"),
                None,
                "{:.2f}",
            )
        )
        rows.append(ratio_row("per-task overhead (ms)", fk_t, m, 50, "{:.2f}"))
        if "floor" in r:
            x = fk_t / r["floor"]["flowkernel"]["wall_ms"]
            rows.append(("per-task overhead / fork floor", f"{x:.2f}x", "-", "-", "<= 1.5x",
                         verdict(x <= 1.5)))  # fmt: skip
    if "big" in r:
        fk_w, m = r["big"]["flowkernel"]["wall"], get(r, "big", "wall")
        rows.append(ratio_row(f"{big_mb} MB artifact wall (s)", fk_w, m, 5, "{:.2f}"))
        fk_single, m_single = r["big"]["flowkernel"]["single"] / MB, get(r, "big", "single")
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
        fk_c = r["memory"]["flowkernel"]["controller"] / MB
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
                r["memory"]["flowkernel"]["wall"],
                get(r, "memory", "wall"),
                None,
                "{:.1f}",
            )
        )
    print_table(("metric", "flowkernel", "metaflow", "ratio", "target", ""), rows)
    if "big" in r:
        print_big(r["big"], big_mb)
    if opts.baseline_python:
        print_baseline(r)
    if opts.syscalls:
        print(f"\nsystem calls per task (strace -f -c, foreach of {opts.syscalls} - start_end):")
        per = {e.label: syscalls_per_task(e, opts.syscalls, env) for e in engines + variants}
        names = sorted({k for p in per.values() for k in p}, key=lambda k: -max(
            p.get(k, 0) for p in per.values()))  # fmt: skip
        rows = [(k, *(f"{p.get(k, 0):.1f}" for p in per.values())) for k in names]
        rows.append(("total", *(f"{sum(p.values()):.1f}" for p in per.values())))
        print_table(("syscall", *per), rows)
    print(f"\nload average at end: {load()}")


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def per_task(r: dict, label: str, n: int, key: str = "wall") -> float | None:
    """(foreach - start_end) / n for ``key``, in ms for times; None if ``label`` did not run."""
    if label not in r.get("foreach", {}) or label not in r.get("start_end", {}):
        return None
    scale = 1000 if key in ("wall", "user", "sys") else 1
    return (r["foreach"][label][key] - r["start_end"][label][key]) / n * scale


def print_per_task(r: dict, n: int, labels: list[str]) -> None:
    """Per task: wall, CPU and page faults of each engine beside the fork floor."""
    print(f"\nper task: (foreach {n} - start_end) / {n}; fork floor: per forked child")
    rows = []
    floors = r.get("floor", {})
    for key, name in (("floor", "fork floor (fork + exit)"), ("floor_write", "floor + 1 file")):
        for label, res in r.get(key, {}).items():
            who = f" [{label}]" if len(r[key]) > 1 else ""
            x = 1.0 if key == "floor" else res["wall_ms"] / res_floor(floors, label)
            rows.append(
                (
                    name + who,
                    f"{res['wall_ms']:.2f}",
                    f"{res['user_ms']:.2f}",
                    f"{res['sys_ms']:.2f}",
                    f"{res['faults']:.0f}",
                    f"{x:.2f}x",
                )
            )
    for label in labels:
        wall = per_task(r, label, n)
        if wall is None:
            continue
        base = floors.get("flowkernel" if label not in floors else label)
        times = [per_task(r, label, n, k) for k in ("user", "sys", "faults")]
        x = f"{wall / base['wall_ms']:.2f}x" if base else "-"
        user, sys_, faults = times
        rows.append((label, f"{wall:.2f}", f"{user:.2f}", f"{sys_:.2f}", f"{faults:.0f}", x))
    print_table(("", "wall ms", "user ms", "sys ms", "faults", "x floor"), rows)


def print_big(res: dict, size_mb: int) -> None:
    """The artifact flow per engine: wall (median and spread), CPU and faults of the tree."""
    print(f"\n{size_mb} MB artifact flow (medians; CPU and faults: wait4, all processes)")
    rows = []
    for label, one in res.items():
        walls = sorted(one["walls"])
        spread = f"{walls[0]:.2f}-{walls[-1]:.2f}"
        cpu = (f"{one['user']:.2f}", f"{one['sys']:.2f}", f"{one['faults']:.0f}")
        rows.append((label, f"{one['wall']:.2f}", spread, *cpu, f"{one['single'] / MB:.0f}"))
    print_table(("", "wall s", "runs s", "user s", "sys s", "faults", "peak MB"), rows)


def res_floor(floors: dict, label: str) -> float:
    return floors[label]["wall_ms"] if label in floors else float("nan")


def print_baseline(r: dict) -> None:
    """This flowkernel against the baseline install, flow by flow (medians, same run)."""
    print("\nflowkernel vs baseline (wall, medians of alternating runs):")
    rows = []
    for name, res in r.items():
        if "baseline" in res and "flowkernel" in res:
            new, old = res["flowkernel"]["wall"], res["baseline"]["wall"]
            unit = "ms" if name.startswith("floor") else "s"
            rows.append((name, f"{old:.3f} {unit}", f"{new:.3f} {unit}", f"{old / new:.2f}x"))
    print_table(("row", "baseline", "flowkernel", "speed-up"), rows)


def get(r: dict, bench: str, key: str) -> float | None:
    return r[bench]["metaflow"][key] if "metaflow" in r[bench] else None


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


def print_table(head: tuple, rows: list[tuple]) -> None:
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

"""Where the page faults of a foreach run (or of the fork floor) happen: every minor fault
recorded with ``perf`` (its address and the instruction that took it), split by process role,
by memory region and by the function that faulted.

    PYTHON bench/fault_map.py [--n 300] [--floor] [--top 20]

Runs ``perf record -e minor-faults -c 1 -d`` of ``PYTHON -m flowkernel.cli run`` of the
foreach flow (``--max-workers 2``), or of ``bench/fork_floor.py`` with ``--floor``, in a
scratch directory (Linux, ``perf`` installed, root or ``perf_event_paranoid`` <= 1). Roles:
the *forker* is the process with the most children (the fork server; the floor's parent),
*tasks* its children that forked nothing; figures are per task (the forker's: per child it
forked). Regions: ``py-data`` libpython's writable data and bss (``_PyRuntime``: the
interpreter state with its method cache, the static objects, the static types), ``py-text``
and ``py-rodata`` (file-backed: a fork does not copy those page tables, a child faults them
in on first use), ``heap`` (the brk heap: glibc malloc), ``anon`` (mmap'd memory: Python's
object arenas, other libraries' data), ``stack``. Functions and libpython data symbols come
from ``nm`` of libpython (the interpreter must be a shared-libpython build, as pyenv's is).
"""

from __future__ import annotations

import argparse
import bisect
import collections
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
FLOW = HERE / "flows" / "foreach_1000.py"


def _symbols(lib: str, kinds: str) -> tuple[list[int], list[tuple[int, int, str]]]:
    out = subprocess.run(["nm", "-n", "-S", lib], capture_output=True, text=True).stdout
    syms = []
    for line in out.splitlines():
        f = line.split()
        if len(f) == 4 and f[2] in kinds:
            syms.append((int(f[0], 16), int(f[1], 16), f[3]))
        elif len(f) == 3 and f[1] in kinds:
            syms.append((int(f[0], 16), 0, f[2]))
    syms.sort()
    return [s[0] for s in syms], syms


def _name(table: tuple[list[int], list[tuple[int, int, str]]], offset: int) -> str:
    starts, syms = table
    i = bisect.bisect_right(starts, offset) - 1
    return syms[i][2] if i >= 0 else "?"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--floor", action="store_true", help="the fork floor instead of the flow")
    ap.add_argument("--top", type=int, default=20)
    opts = ap.parse_args()
    where = tempfile.mkdtemp(prefix="fkfaults.")
    data = os.path.join(where, "perf.data")
    if opts.floor:
        cmd = [sys.executable, str(HERE / "fork_floor.py"), str(FLOW), "--n", str(opts.n)]
    else:
        cmd = [sys.executable, "-m", "flowkernel.cli", "run", str(FLOW), "--n", str(opts.n),
               "--max-workers", "2", "--max-num-splits", str(opts.n + 1), "--quiet"]  # fmt: skip
    subprocess.run(["perf", "record", "-q", "-e", "minor-faults", "-c", "1", "-d", "-o", data,
                    "--", *cmd], cwd=where, check=True, stdout=subprocess.DEVNULL)  # fmt: skip
    script = subprocess.run(
        ["perf", "script", "-i", data, "--show-task-events", "--show-mmap-events",
         "-F", "pid,addr,ip"], capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    shutil.rmtree(where, ignore_errors=True)

    parent: dict[int, int] = {}
    maps: list[tuple[int, int, str]] = []  # libpython's mappings: start, end, perms
    lib = None
    samples: list[tuple[int, int, int]] = []
    for line in script.splitlines():
        if "PERF_RECORD_FORK(" in line:
            child, par = line.split("PERF_RECORD_FORK(")[1].split(":(")
            parent[int(child.split(":")[0])] = int(par.split(":")[0])
        elif "PERF_RECORD_MMAP2" in line and "/libpython" in line and len(maps) < 4:
            rng = line.split("[")[1].split("]")[0]  # the first four: r--p r-xp r--p rw-p
            start, size = rng.split("(")[0], rng.split("(")[1].split(")")[0]
            perms = line.split("]: ")[1].split()[0]
            lib = line.split()[-1]
            maps.append((int(start, 16), int(start, 16) + int(size, 16), perms))
        elif "PERF_RECORD" not in line:
            f = line.split()
            if len(f) >= 3:
                try:
                    samples.append((int(f[0]), int(f[1], 16), int(f[2], 16)))
                except ValueError:
                    continue
    if lib is None:
        sys.exit("no libpython mapping seen (a statically linked interpreter?)")
    base = maps[0][0]
    text = _symbols(lib, "tTwW")
    data_syms = _symbols(lib, "dDbB")

    def region(addr: int) -> str:
        for start, end, perms in maps[:0:-1] + maps[:1]:  # (the first spans the whole file)
            if start <= addr < end:
                return {"r-xp": "py-text", "rw-p": "py-data"}.get(perms, "py-rodata")
        if maps[-1][1] <= addr < maps[-1][1] + (1 << 20):  # bss past the file mapping
            return "py-data"
        if addr >= 0x7FF000000000:
            return "stack"
        return "heap" if addr < 0x600000000000 else "anon"

    children = collections.Counter(parent.values())
    forker = children.most_common(1)[0][0]
    tasks = {pid for pid, par in parent.items() if par == forker and pid not in children}
    for role, pids, per in (("forker", {forker}, len(tasks)), ("tasks", tasks, len(tasks))):
        regions: collections.Counter[str] = collections.Counter()
        funcs: collections.Counter[tuple[str, str]] = collections.Counter()
        pydata: collections.Counter[str] = collections.Counter()
        for pid, addr, ip in samples:
            if pid not in pids:
                continue
            where_ = region(addr)
            regions[where_] += 1
            func = _name(text, ip - base) if maps[1][0] <= ip < maps[1][1] else "(not libpython)"
            funcs[(where_, func)] += 1
            if where_ == "py-data":
                pydata[_name(data_syms, addr - base)] += 1
        total = sum(regions.values()) / per
        print(f"{role}: {total:.1f} faults per task ({len(pids)} processes, {per} tasks)")
        print("  by region: " + ", ".join(f"{k} {v / per:.1f}" for k, v in regions.most_common()))
        print("  by (region, faulting function):")
        for (where_, func), v in funcs.most_common(opts.top):
            print(f"    {where_:9} {func:42} {v / per:6.1f}")
        print("  libpython data, by symbol: " + ", ".join(
            f"{k} {v / per:.1f}" for k, v in pydata.most_common(8)))  # fmt: skip


if __name__ == "__main__":
    main()

"""The after-fork work of a task process: what a child of the fork server costs from its fork
to its first Python statement, with ``os.fork()`` or with :mod:`flowkernel.engine.fastfork`.

    .venv/bin/python bench/afterfork.py os|fast [--n 2000] [FLOW_FILE]

Builds the warm controller of ``bench/fork_floor.py``, forks a server from it as the local
runtime does (SIGINT and SIGTERM ignored, ``gc.freeze()``), and from the server forks ``--n``
children one at a time; each reads its own ``getrusage`` first thing and exits. Prints one
line: per child, the median and mean CPU (user + system) and the faults up to that first
statement (the after-fork work), the whole child's CPU and faults (with its exit), and the
server's CPU and faults per fork. Run the two modes alternately (the machine's load moves).
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import signal
import statistics
import struct
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
_RECORD = struct.Struct("dq")


def serve(mode: str, n: int) -> str:  # pragma: no cover - runs in the server-like process
    from flowkernel.engine import fastfork

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    forker = fastfork.Forker.prepare() if mode == "fast" else None
    if mode == "fast" and forker is None:
        return "fast: no forker in this interpreter"
    gc.freeze()
    fork = forker.fork if forker is not None else os.fork
    r, w = os.pipe()
    s0, c0 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    for _ in range(n):
        pid = fork()
        if pid == 0:
            ru = resource.getrusage(resource.RUSAGE_SELF)
            os.write(w, _RECORD.pack(ru.ru_utime + ru.ru_stime, ru.ru_minflt))
            os._exit(0)
        os.waitpid(pid, 0)
    s1, c1 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    os.close(w)
    data = b""
    while len(data) < n * _RECORD.size:
        data += os.read(r, 1 << 16)
    cpu = [_RECORD.unpack_from(data, i * _RECORD.size)[0] * 1e6 for i in range(n)]
    faults = [_RECORD.unpack_from(data, i * _RECORD.size)[1] for i in range(n)]

    def per(a: resource.struct_rusage, b: resource.struct_rusage) -> tuple[float, float]:
        cpu_ms = (b.ru_utime + b.ru_stime - a.ru_utime - a.ru_stime) / n * 1e3
        return cpu_ms, (b.ru_minflt - a.ru_minflt) / n

    child, server = per(c0, c1), per(s0, s1)
    return (
        f"{mode:4} after-fork: CPU median {statistics.median(cpu):5.0f} us, mean "
        f"{statistics.mean(cpu):5.0f} us, {statistics.mean(faults):5.1f} faults | whole child "
        f"{child[0]:.2f} ms, {child[1]:5.1f} faults | server {server[0]:.2f} ms, "
        f"{server[1]:4.1f} faults per fork"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("os", "fast"))
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("flow", nargs="?", default=str(HERE / "flows" / "foreach_1000.py"))
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    from fork_floor import warm_controller

    warm_controller(args.flow)
    r, w = os.pipe()
    if os.fork() == 0:  # pragma: no cover - the server-like process
        os.close(r)
        os.write(w, serve(args.mode, args.n).encode())
        os._exit(0)
    os.close(w)
    os.wait()
    print(os.read(r, 4096).decode())


if __name__ == "__main__":
    main()

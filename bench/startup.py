"""How long ``flow --help`` and ``flow plugins`` take beyond starting a bare interpreter.

    .venv/bin/python bench/startup.py [--runs N] [--importtime] [--no-bytecode]

Runs each command N times (default 21) with the interpreter running this script, after one
warm-up run, and prints the median wall time of each and its overhead over
``python -c pass``, and the median CPU time (user + system, which load on a shared machine
disturbs less than wall time). The target is an overhead under 150 ms. ``--importtime`` also
prints the slowest imports of ``flow --help`` (``python -X importtime``), to see what to make lazy.

Bytecode: an installed package has its ``.pyc`` files, but an editable checkout run with
``PYTHONDONTWRITEBYTECODE=1`` recompiles every flowkernel module on every start. By default the
benchmark lets Python cache bytecode under a temporary ``PYTHONPYCACHEPREFIX`` (nothing is
written into the repo), which is what users see; ``--no-bytecode`` measures without a cache.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

TARGET_MS = 150.0
#: What the ``flow`` console script runs (installs from before flowkernel.cli.launch: main's main)
FLOW = (
    "try:\n    from flowkernel.cli.launch import main\n"
    "except ImportError:\n    from flowkernel.cli.main import main\nmain()"
)
COMMANDS = {
    "python -c pass": ["-c", "pass"],
    # the floor: the dependencies every `flow` start needs, without any flowkernel code
    "deps only": ["-c", "import attrs, click, pluggy, importlib.metadata"],
    "flow --help": ["-c", FLOW, "--help"],
    "flow plugins": ["-c", FLOW, "plugins"],
}


def median_ms(args: list[str], runs: int, env: dict[str, str]) -> tuple[float, float]:
    """Median wall time and median CPU time (user + system, from ``wait4``) in ms."""
    cmd = [sys.executable, *args]
    subprocess.run(cmd, check=True, capture_output=True, env=env)  # warm caches, write .pyc
    walls, cpus = [], []
    for _ in range(runs):
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        walls.append((time.perf_counter() - start) * 1000)
        cpus.append((usage.ru_utime + usage.ru_stime) * 1000)
        if os.waitstatus_to_exitcode(status) != 0:
            raise subprocess.CalledProcessError(os.waitstatus_to_exitcode(status), cmd)
        proc.returncode = 0
    return statistics.median(walls), statistics.median(cpus)


def slowest_imports(env: dict[str, str], limit: int = 15) -> list[tuple[int, str]]:
    """(cumulative microseconds, module) of the slowest top-level imports of ``flow --help``."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", FLOW, "--help"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    rows = []
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = (part.strip() for part in line[len("import time:") :].split("|"))
        depth = (len(name) - len(name.lstrip())) // 2
        if depth <= 1:
            rows.append((int(cumulative), name.strip()))
    return sorted(rows, reverse=True)[:limit]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--importtime", action="store_true")
    parser.add_argument("--no-bytecode", action="store_true", help="do not cache .pyc files")
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    with tempfile.TemporaryDirectory(prefix="flowkernel-bench-") as cache:
        if args.no_bytecode:
            env["PYTHONDONTWRITEBYTECODE"] = "1"
        else:
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = cache
        return report(args, env)


def report(args: argparse.Namespace, env: dict[str, str]) -> int:
    env_note = {k: v for k, v in env.items() if k.startswith("FLOWKERNEL_")}
    bytecode = "off" if args.no_bytecode else "cached"
    print(f"interpreter: {sys.executable} ({sys.version.split()[0]})")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    print(f"{args.runs} runs each, median; bytecode {bytecode}; load average {load}")
    if env_note:
        print(f"environment: {env_note}")
    results = {label: median_ms(cmd, args.runs, env) for label, cmd in COMMANDS.items()}
    bare, bare_cpu = results["python -c pass"]
    over = False
    for label, (ms, cpu) in results.items():
        extra = "" if label == "python -c pass" else f"  (+{ms - bare:.0f} ms over bare)"
        cpu_extra = "" if label == "python -c pass" else f" (+{cpu - bare_cpu:.0f})"
        print(f"{label:16} median {ms:6.0f} ms{extra:22} cpu {cpu:5.0f} ms{cpu_extra}")
        over |= label.startswith("flow") and ms - bare > TARGET_MS
    print(f"target: < {TARGET_MS:.0f} ms over bare interpreter -> {'OVER' if over else 'ok'}")
    if args.importtime or over:
        print("\nslowest imports of `flow --help` (cumulative, python -X importtime):")
        for micros, name in slowest_imports(env):
            print(f"  {micros / 1000:7.1f} ms  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

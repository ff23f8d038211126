"""Storage backends side by side: the local root vs an s3:// root on a loopback SeaweedFS.

    .venv/bin/python bench/storage_bench.py [--repeats 3] [--n 300] [--size-mb 200]
                                            [--roots local s3]

For each root it runs, with ``flow --datastore-root ROOT run ... --quiet`` in a fresh temporary
directory: ``start_end.py`` (the fixed cost of a run), ``foreach_1000.py --n N`` and
``big_artifact.py --size_mb M`` (write then read one M MB artifact). The s3 root is a bucket on
a SeaweedFS ``weed mini`` started for the run (``flowkernel.testing_s3``, the test fixture's
server) with signatures enforced. Figures are medians of ``--repeats``.

Per-task overhead = (wall(foreach, N) - wall(start_end)) / N.
Big artifact throughput = 2 * M MB / (wall(big_artifact) - wall(start_end)) (written once, read
once, pickling included): the end-to-end figure a user sees.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run_bench import FLOWS, median_run


def flow_cmd(root: str, flow: Path, args: list[str]) -> list[str]:
    return [sys.executable, "-m", "flowkernel.cli", "--datastore-root", root, "run", str(flow),
            "--quiet", *args]  # fmt: skip


def bench_root(name: str, root: str, opts, env) -> dict[str, float]:
    def one(flow: str, args: list[str]) -> float:
        res = median_run(flow_cmd(root, FLOWS / flow, args), FLOWS / flow, opts.repeats, False, env)
        print(f"  {name} {flow} {' '.join(args)}: {res['wall']:.2f} s "
              f"({', '.join(f'{w:.2f}' for w in res['walls'])})", flush=True)  # fmt: skip
        return res["wall"]

    base = one("start_end.py", [])
    splits = ["--max-num-splits", str(opts.n + 1), "--max-workers", "2"]
    foreach = one("foreach_1000.py", [*splits, "--n", str(opts.n)])
    big = one("big_artifact.py", ["--size_mb", str(opts.size_mb)])
    return {
        "start_end": base,
        "per_task_ms": (foreach - base) / opts.n * 1000,
        "big_wall": big,
        "big_mb_s": 2 * opts.size_mb / max(big - base, 1e-6),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--n", type=int, default=300, help="foreach width")
    ap.add_argument("--size-mb", type=int, default=200)
    ap.add_argument("--roots", nargs="*", default=["local", "s3"])
    opts = ap.parse_args()
    env = {**os.environ, "USER": os.environ.get("USER") or "bench", "PYTHONUNBUFFERED": "1"}
    print(f"machine: {os.cpu_count()} cpus, {platform.platform()}, "
          f"python {platform.python_version()}")  # fmt: skip
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    results = {}
    with tempfile.TemporaryDirectory(prefix="fkbench-store.") as tmp:
        if "local" in opts.roots:
            results["local"] = bench_root("local", os.path.join(tmp, "local-root"), opts, env)
        if "s3" in opts.roots:
            from flowkernel.testing_s3 import SeaweedFS

            with SeaweedFS(Path(tmp) / "weed") as server:
                results["s3"] = bench_root(
                    "s3", server.root_url("bench"), opts, {**env, **server.env()}
                )
    print("\n| metric | " + " | ".join(results) + " |")
    print("| --- |" + " --- |" * len(results))
    for key, label, fmt in [
        ("start_end", "start->end wall (s)", "{:.2f}"),
        ("per_task_ms", f"per-task overhead, foreach {opts.n} (ms)", "{:.1f}"),
        ("big_wall", f"{opts.size_mb} MB artifact flow wall (s)", "{:.2f}"),
        ("big_mb_s", f"{opts.size_mb} MB write+read end to end (MB/s)", "{:.0f}"),
    ]:
        print(f"| {label} | " + " | ".join(fmt.format(r[key]) for r in results.values()) + " |")
    if "local" in results and "s3" in results:
        ratio = results["s3"]["per_task_ms"] / max(results["local"]["per_task_ms"], 1e-6)
        mb_s = results["s3"]["big_mb_s"]
        print(f"\nper-task overhead s3/local: {ratio:.2f}x (target <= 3x); "
              f"big artifact on s3: {mb_s:.0f} MB/s (target >= 100)")  # fmt: skip
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()

"""Fixtures of the dask runtime's tests: a real Dask cluster (see dask_helpers)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from flowkernel.testing_procs import assert_gone

sys.path.insert(0, str(Path(__file__).resolve().parent))
import dask_helpers as dh


@pytest.fixture(scope="session")
def dask_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dh.Cluster]:
    """``dask scheduler`` + two ``dask worker`` processes (nannies restart a killed worker)."""
    base = tmp_path_factory.mktemp("dask")
    scheduler_file = base / "scheduler.json"
    local = ["--host", "127.0.0.1", "--dashboard-address", "127.0.0.1:0"]
    dask = [sys.executable, "-m", "dask"]
    logs = []

    def start(name: str, argv: list[str]) -> subprocess.Popen:
        log = open(base / f"{name}.log", "wb")  # noqa: SIM115 (closed at teardown)
        logs.append(log)
        return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=base)

    scheduler = start("scheduler", [*dask, "scheduler", "--port", "0", *local,
                                    "--scheduler-file", str(scheduler_file)])  # fmt: skip
    worker = [*dask, "worker", "--scheduler-file", str(scheduler_file), *local, "--nthreads", "1"]
    workers = (
        start("worker0", [*worker, "--resources", "gpu=1", "--name", "w0"]),
        start("worker1", [*worker, "--name", "w1"]),
    )
    try:
        address = dh.wait_for_workers(scheduler_file, 2, time.monotonic() + 90)
        yield dh.Cluster(scheduler_file, address, scheduler, workers)
    finally:
        dh.stop_processes(workers)
        dh.stop_processes([scheduler])
        for log in logs:
            log.close()


@pytest.fixture(autouse=True)
def _restore_client(restore_client: None) -> None:
    """Every test leaves the client as it found it (flowkernel.testing's fixture)."""


@pytest.fixture
def no_stray_steps() -> Iterator[list[int]]:
    """Fails the test if a ``flow step`` process is still alive at its end."""
    before = {p.pid for p in dh.step_processes()}
    yield []
    assert_gone(also=lambda: [p for p in dh.step_processes() if p.pid not in before], timeout=10)

"""Connecting to the Dask cluster a run uses: an address, a scheduler file, or an embedded
``LocalCluster`` started for the run and closed after it."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any

from flowkernel.errors import FlowkernelError, UsageError

#: Seconds to wait for the scheduler to answer before the run fails
#: (``FLOWKERNEL_DASK_CONNECT_TIMEOUT`` overrides it).
CONNECT_TIMEOUT = 10.0


class SchedulerUnreachable(FlowkernelError):
    """No scheduler answered at the address the run was given (exit code 1)."""

    headline = "Dask scheduler unreachable"


@contextlib.contextmanager
def dask_client(
    address: str | None, scheduler_file: str | None, max_workers: int, say: Any
) -> Iterator[Any]:
    """A connected ``distributed.Client``; an embedded cluster when no address is given.

    The embedded cluster has ``min(max_workers, cores)`` worker processes of one thread each,
    every socket on 127.0.0.1 and its dashboard on a free port (parallel runs never collide).
    """
    from distributed import Client

    timeout = float(os.environ.get("FLOWKERNEL_DASK_CONNECT_TIMEOUT") or CONNECT_TIMEOUT)
    if address and scheduler_file:
        raise UsageError("give --dask-scheduler or --dask-scheduler-file, not both")
    if scheduler_file:
        if not os.path.isfile(scheduler_file):
            raise UsageError(f"Dask scheduler file not found: {scheduler_file}")
        where = f"the scheduler in {scheduler_file}"
        with _connect(where, timeout, lambda: Client(scheduler_file=scheduler_file,
                                            timeout=timeout)) as client:  # fmt: skip
            yield client
        return
    if address:
        with _connect(address, timeout, lambda: Client(address, timeout=timeout)) as client:
            yield client
        return
    from distributed import LocalCluster

    workers = max(1, min(max_workers, os.cpu_count() or 1))
    with _sigint_ignored():
        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
            silence_logs=logging.ERROR,
        )
    try:
        client = Client(cluster)
        try:
            say(f"Embedded Dask cluster: {workers} workers, dashboard {cluster.dashboard_link}")
            yield client
        finally:
            client.close()
    finally:
        cluster.close()


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    """SIGINT ignored while the embedded cluster's worker processes start: they inherit it.

    A Ctrl-C in a terminal reaches the whole foreground process group, and the worker
    processes are in the controller's; the controller stops the run itself, then closes the
    cluster. Without this, each worker dies of the Ctrl-C at once, printing tracebacks, and the
    controller's client logs errors about the vanished workers while it stops the steps.
    """
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def _connect(where: str, timeout: float, make: Any) -> Iterator[Any]:
    try:
        client = make()
    except (OSError, TimeoutError) as exc:
        raise SchedulerUnreachable(
            f"could not reach the Dask scheduler at {where} within {timeout:g} s "
            f"({type(exc).__name__}: {exc})"
        ) from None
    try:
        yield client
    finally:
        client.close()

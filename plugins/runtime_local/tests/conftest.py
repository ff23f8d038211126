"""Helpers of the runtime behaviour tests: run a flow as a real subprocess, read it back.

Every flow runs in its own ``flow run`` (or ``python flow.py run``) process against a datastore
root under pytest's temporary directory; results are read with the client pointed at that root.
Flows used by several tests run once per test module (module-scoped fixtures).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from flowkernel.testing_procs import FlowResult, run_flow_process, subprocess_env

sys.path.insert(0, str(Path(__file__).resolve().parent))
import robust_helpers as rh

FLOWS = Path(__file__).resolve().parent / "flows"
#: A run that takes longer than this is hung, not slow.
RUN_TIMEOUT = 120


def run_flow_in(
    root: Path,
    flow: str | Path,
    *args: str,
    how: str = "module",
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> FlowResult:
    """Run ``flow`` (a file name under flows/ or a path) in a subprocess, storing under ``root``.

    :param how: ``module`` = ``python -m flowkernel.cli run FILE``; ``flow`` = the ``flow``
        console script; ``script`` = ``python FILE run``.
    """
    path = Path(flow) if os.path.isabs(flow) else FLOWS / flow
    return run_flow_process(
        root, path, *args, how=how, env=env, cwd=cwd or root.parent, timeout=RUN_TIMEOUT
    )


@pytest.fixture
def world(tmp_path: Path) -> Iterator[rh.Env]:
    """The robustness tests' world (:class:`robust_helpers.Env`): a datastore root, a marker
    directory and a process tag; whatever still carries the tag afterwards is killed."""
    env = rh.Env(tmp_path)
    yield env
    rh.kill_tagged(env.tag)


@pytest.fixture(scope="session")
def shared_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One datastore root for the flows whose runs are shared by several tests."""
    return tmp_path_factory.mktemp("shared") / "datastore"


@pytest.fixture(scope="session")
def run_flow(shared_root: Path) -> Callable[..., FlowResult]:
    """``run_flow(file, *args, how=, env=) -> FlowResult`` in the shared root."""

    def run(flow: str | Path, *args: str, **kwargs: Any) -> FlowResult:
        return run_flow_in(shared_root, flow, *args, **kwargs)

    return run


@pytest.fixture
def run_flow_fresh(tmp_path: Path) -> Callable[..., FlowResult]:
    """``run_flow`` in a root of this test's own (for checks of what a root holds)."""

    def run(flow: str | Path, *args: str, **kwargs: Any) -> FlowResult:
        return run_flow_in(tmp_path / "datastore", flow, *args, **kwargs)

    return run


@pytest.fixture(autouse=True)
def _restore_client(restore_client: None) -> None:
    """Every test leaves the client as it found it (flowkernel.testing's fixture)."""


def _read_in_subprocess(root: Path, code: str) -> str:
    """Run ``code`` in a fresh interpreter with the client pointed at ``root``; its stdout."""
    prelude = (
        "from flowkernel.client import metadata, namespace\n"
        f"metadata({str(root)!r})\nnamespace(None)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", prelude + code],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        cwd=root.parent,
        timeout=RUN_TIMEOUT,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


@pytest.fixture(scope="session")
def read_in_subprocess() -> Callable[[Path, str], str]:
    """``read_in_subprocess(root, code) -> stdout``: client code run in a fresh interpreter."""
    return _read_in_subprocess


@pytest.fixture(scope="session")
def run_flow_at() -> Callable[..., FlowResult]:
    """``run_flow_at(root, file, *args, how=, env=) -> FlowResult`` (see :func:`run_flow_in`)."""
    return run_flow_in

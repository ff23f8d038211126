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

import attrs
import pytest

FLOWS = Path(__file__).resolve().parent / "flows"
#: A run that takes longer than this is hung, not slow.
RUN_TIMEOUT = 120


@attrs.define
class FlowResult:
    """The outcome of one ``run`` process and a way to read the run back."""

    returncode: int
    stdout: str
    stderr: str
    root: Path
    flow_name: str | None
    run_id: str | None

    @property
    def output(self) -> str:
        return f"exit {self.returncode}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"

    def assert_ok(self) -> FlowResult:
        assert self.returncode == 0, self.output
        return self

    @property
    def run(self) -> Any:
        """The client ``Run`` (the client is pointed at this result's root first)."""
        from flowkernel.client import Run

        assert self.run_id is not None, "no run was recorded\n" + self.output
        point_client_at(self.root)
        return Run(f"{self.flow_name}/{self.run_id}")

    def task(self, step: str) -> Any:
        """The (single, or newest) task of ``step``."""
        return self.run[step].task

    def data(self, step: str) -> Any:
        return self.task(step).data

    def tasks(self, step: str) -> list[Any]:
        """Every task of ``step``, in launch order (oldest first)."""
        return sorted(self.run[step], key=lambda t: int(t.id))


def point_client_at(root: Path) -> None:
    from flowkernel.client import metadata, namespace

    metadata(str(root))
    namespace(None)


def subprocess_env(**extra: str) -> dict[str, str]:
    """The test environment without PYTHONPATH and FLOWKERNEL_* variables, plus ``extra``."""
    env = {
        k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("FLOWKERNEL_")
    }
    env["FLOWKERNEL_USER"] = "tester"
    env.update(extra)
    return env


def _find_run(root: Path, run_id: str | None) -> tuple[str | None, str | None]:
    if not run_id:
        return None, None
    for flow_dir in root.iterdir() if root.is_dir() else ():
        if (flow_dir / run_id).is_dir():
            return flow_dir.name, run_id
    return None, None


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
    id_file = root.parent / f"run-id-{os.urandom(6).hex()}"
    tail = ["run", *args, "--run-id-file", str(id_file)]
    if how == "module":
        cmd = [sys.executable, "-m", "flowkernel.cli", "--datastore-root", str(root), "run"]
        cmd += [str(path), *tail[1:]]
    elif how == "flow":
        exe = Path(sys.executable).parent / "flow"
        cmd = [str(exe), "--datastore-root", str(root), "run", str(path), *tail[1:]]
    elif how == "script":
        cmd = [sys.executable, str(path), "--datastore-root", str(root), *tail]
    else:
        raise ValueError(how)
    proc = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        env=subprocess_env(**(env or {})),
        cwd=cwd or root.parent,
        timeout=RUN_TIMEOUT,
    )
    run_id = id_file.read_text().strip() if id_file.exists() else None
    flow_name, run_id = _find_run(root, run_id)
    return FlowResult(proc.returncode, proc.stdout, proc.stderr, root, flow_name, run_id)


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
def _restore_client() -> Iterator[None]:
    """Leave the client as a test found it (its datastore root and namespace are global)."""
    from flowkernel import client

    saved = (client._root, client._namespace)
    yield
    client._root, client._namespace = saved


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

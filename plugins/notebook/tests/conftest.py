"""Execute notebooks in a real Jupyter kernel (ipykernel via nbclient) and record their output.

The kernel is this test environment's Python, through a kernelspec written for the session
into a temporary JUPYTER_PATH (first on Jupyter's search path), so no other installed
kernelspec can be picked by accident. Each stream message is recorded with its arrival time and
cell, so tests can check that output streams into the right cell while a flow runs.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs
import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

from flowkernel.testing_procs import processes_mentioning, wait_until_gone  # noqa: E402

KERNEL = "flowkernel-nbtest"
REPO = Path(__file__).resolve().parents[3]
CELL_TIMEOUT = 120  # seconds per cell: generous for a loaded 2-core machine


@pytest.fixture(scope="session")
def kernel_name(tmp_path_factory) -> Any:
    """A kernelspec running this interpreter, first on JUPYTER_PATH for the session."""
    root = tmp_path_factory.mktemp("jupyter")
    spec_dir = root / "kernels" / KERNEL
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "flowkernel tests",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    old = os.environ.get("JUPYTER_PATH")
    os.environ["JUPYTER_PATH"] = str(root) + (os.pathsep + old if old else "")
    yield KERNEL
    if old is None:
        os.environ.pop("JUPYTER_PATH", None)
    else:
        os.environ["JUPYTER_PATH"] = old


@attrs.frozen
class Arrival:
    """One stream message as the client received it."""

    at: float
    cell: int
    name: str
    text: str


@attrs.define
class Executed:
    """An executed notebook: its cells with outputs, and when each stream message arrived."""

    nb: Any
    arrivals: list[Arrival]
    finished_at: dict[int, float]

    def text(self, index: int, stream: str = "stdout") -> str:
        outputs = self.nb.cells[index].get("outputs", [])
        return "".join(o.get("text", "") for o in outputs if o.get("name") == stream)

    def error(self, index: int) -> dict | None:
        for out in self.nb.cells[index].get("outputs", []):
            if out.get("output_type") == "error":
                return out
        return None

    def data(self, index: int, mime: str) -> list[str]:
        outputs = self.nb.cells[index].get("outputs", [])
        return [o["data"][mime] for o in outputs if mime in o.get("data", {})]


@attrs.define
class Interrupt:
    """Interrupt the kernel while cell ``cell`` runs, once ``ready()`` is true."""

    cell: int
    ready: Callable[[], bool]
    timeout: float = 60.0


def make_notebook(cells: Sequence[str]) -> Any:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(textwrap.dedent(c).strip("\n")) for c in cells]
    nb.metadata["kernelspec"] = {"name": KERNEL, "language": "python", "display_name": KERNEL}
    return nb


class _RecordingClient(nbclient.NotebookClient):
    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.arrivals: list[Arrival] = []

    def output(self, outs: Any, msg: dict, display_id: Any, cell_index: int) -> Any:
        if msg["msg_type"] == "stream":
            content = msg["content"]
            self.arrivals.append(
                Arrival(time.monotonic(), cell_index, content["name"], content["text"])
            )
        return super().output(outs, msg, display_id, cell_index)


async def _execute(
    nb: Any, cwd: Path, kernel: str, allow_errors: bool, interrupt: Interrupt | None
) -> Executed:
    client = _RecordingClient(
        nb,
        kernel_name=kernel,
        timeout=CELL_TIMEOUT,
        allow_errors=allow_errors or interrupt is not None,
        resources={"metadata": {"path": str(cwd)}},
    )
    finished: dict[int, float] = {}
    client.reset_execution_trackers()
    async with client.async_setup_kernel():
        for index, cell in enumerate(nb.cells):
            job = asyncio.ensure_future(client.async_execute_cell(cell, index))
            if interrupt is not None and interrupt.cell == index:
                deadline = time.monotonic() + interrupt.timeout
                while not interrupt.ready() and not job.done():
                    assert time.monotonic() < deadline, "the interrupt condition never came true"
                    await asyncio.sleep(0.05)
                await client.km.interrupt_kernel()
            await job
            finished[index] = time.monotonic()
    return Executed(nb, client.arrivals, finished)


@pytest.fixture
def run_notebook(kernel_name, tmp_path) -> Callable[..., Executed]:
    """Execute cells in a fresh kernel whose working directory is ``tmp_path``.

    A failing cell fails the test (nbclient's error shows the cell's traceback) unless
    ``allow_errors``. Afterwards no process of a flow of this test may be alive.
    """

    def run(
        cells: Sequence[str] | Any, allow_errors: bool = False, interrupt: Interrupt | None = None
    ) -> Executed:
        nb = make_notebook(cells) if isinstance(cells, (list, tuple)) else cells
        done = asyncio.run(_execute(nb, tmp_path, kernel_name, allow_errors, interrupt))
        survivors = wait_until_gone(timeout=20, also=lambda: processes_mentioning(str(tmp_path)))
        assert not survivors, f"processes left behind: {[p.cmdline() for p in survivors]}"
        return done

    return run


@pytest.fixture(scope="session")
def local_deployer_site(tmp_path_factory) -> Path:
    """The tutorial deployer (examples/plugins/flowkernel-local-deployer), built and installed
    into a fresh directory for PYTHONPATH; the test environment itself is not changed."""
    work = tmp_path_factory.mktemp("deployer")
    src = work / "flowkernel-local-deployer"
    ignore = shutil.ignore_patterns("build", "*.egg-info", "__pycache__", "tests")
    shutil.copytree(REPO / "examples" / "plugins" / "flowkernel-local-deployer", src, ignore=ignore)
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "-q"]
    cmd += ["--disable-pip-version-check", "--no-index", "--target", str(work / "site"), str(src)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return work / "site"

"""Shared setup of the kernel tests (the kernel fixtures come from flowkernel.testing)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from flowkernel.testing_procs import subprocess_env

ROOT = Path(__file__).resolve().parents[1]
_IGNORE = shutil.ignore_patterns("build", "dist", "*.egg-info", "__pycache__", ".venv", ".git")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "slow: builds or installs distributions in subprocesses (deselect: -m 'not slow')",
    )


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def venv_bin() -> Callable[[str], Path]:
    """Path of an executable of the environment running the tests (``.venv/bin/flow``)."""

    def find(name: str) -> Path:
        path = Path(sys.executable).parent / (f"{name}.exe" if os.name == "nt" else name)
        if not path.exists():
            pytest.skip(f"{name} is not installed next to {sys.executable}")
        return path

    return find


@pytest.fixture(scope="session")
def clean_env() -> Callable[..., dict[str, str]]:
    """Environment for a subprocess: no PYTHONPATH, no FLOWKERNEL_* variables, plus ``extra``."""

    def make(**extra: str) -> dict[str, str]:
        return subprocess_env(user=None, **extra)

    return make


def _copy_source(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest, ignore=_IGNORE)
    return dest


@pytest.fixture(scope="session")
def copy_source() -> Callable[[Path, Path], Path]:
    """Copy a distribution's source tree without build leftovers, so builds never touch the repo."""
    return _copy_source


@pytest.fixture(scope="session")
def install_distributions(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """Install source trees for real into a fresh directory; returns it (for PYTHONPATH).

    ``pip install --no-deps --no-build-isolation --target DIR``: a real build and install that
    leaves the test environment untouched.
    """

    def install(*sources: Path) -> Path:
        work = tmp_path_factory.mktemp("install")
        copies = [_copy_source(src, work / "src" / src.name) for src in sources]
        target = work / "site"
        cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "-q"]
        cmd += ["--disable-pip-version-check", "--no-index", "--target", str(target)]
        proc = subprocess.run([*cmd, *map(str, copies)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return target

    return install


@pytest.fixture(autouse=True)
def _client_state_restored(restore_client: None) -> None:
    """Every test leaves the client as it found it (flowkernel.testing's fixture)."""

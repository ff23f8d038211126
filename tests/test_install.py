"""Installing from a checkout, as a new user would: a wheelhouse (``dev.py dist``) installed
with ``pip install --find-links dist 'flowkernel[all]'``, then ``PYTHON dev.py install``, into
a fresh virtual environment that runs a flow after each; ``dev.py flow`` from another folder."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
pytestmark = pytest.mark.slow


def _plugin_dirs() -> list[str]:
    return sorted(p.parent.name for p in (ROOT / "plugins").glob("*/pyproject.toml"))


def _fresh_venv(path: Path) -> Path:
    venv.EnvBuilder(with_pip=True).create(path)
    return path / ("Scripts" if os.name == "nt" else "bin")


def _check_environment(bin_dir: Path, work: Path, clean_env) -> None:
    """The fresh environment's `flow` runs a flow and has every plugin this platform uses."""
    env = clean_env()
    ran = subprocess.run(
        [str(bin_dir / "flow"), "run", str(EXAMPLES / "hello.py"), "--quiet"],
        capture_output=True, text=True, cwd=work, env=env, timeout=120,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "HELLO, WORLD!" in ran.stdout
    listed = subprocess.run(
        [str(bin_dir / "flow"), "plugins", "--json"],
        capture_output=True, text=True, cwd=work, env=env, timeout=60,
    )  # fmt: skip
    records = {r["name"]: r["status"] for r in json.loads(listed.stdout)}
    expected = set(_plugin_dirs())
    if not sys.platform.startswith("darwin"):
        expected.discard("procpoll_darwin")  # [all] installs it only on macOS
    assert expected <= set(records), records
    assert all(records[name] == "loaded" for name in expected), records


def test_a_wheelhouse_then_dev_py_install_each_give_a_working_environment(tmp_path, clean_env):
    """Both ways of installing from a checkout, one after the other in one fresh virtual
    environment (the third-party dependencies are installed once, by the first)."""
    bin_dir = _fresh_venv(tmp_path / "env")
    pip = [str(bin_dir / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]

    # 1. `dev.py dist`, then `pip install --find-links dist 'flowkernel[all]'`: every plugin
    # and every third-party dependency resolved from the wheels' metadata
    dist = tmp_path / "dist"
    built = subprocess.run(
        [sys.executable, str(ROOT / "dev.py"), "dist", str(dist)],
        capture_output=True, text=True, timeout=600, env=clean_env(),
    )  # fmt: skip
    assert built.returncode == 0, built.stdout + built.stderr
    wheels = sorted(p.name for p in dist.glob("*.whl"))
    assert len(wheels) == 1 + len(_plugin_dirs()), wheels
    assert "Editable installation" not in built.stderr
    installed = subprocess.run(
        [*pip, "--find-links", str(dist), "flowkernel[all]"],
        capture_output=True, text=True, timeout=600, env=clean_env(),
    )  # fmt: skip
    assert installed.returncode == 0, installed.stdout + installed.stderr
    _check_environment(bin_dir, tmp_path, clean_env)

    # 2. `PYTHON dev.py install` (flowkernel's distributions removed first, so it installs
    # them all itself); a setuptools new enough lets dev.py build in the environment (no
    # isolated build per distribution: minutes on a loaded 2-core machine)
    ours = [name.split("-")[0].replace("_", "-") for name in wheels]
    removed = subprocess.run(
        [str(bin_dir / "python"), "-m", "pip", "uninstall", "-y", "-q", *ours],
        capture_output=True, text=True, timeout=300, env=clean_env(),
    )  # fmt: skip
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert not (bin_dir / "flow").exists()
    tools = subprocess.run([*pip, "setuptools>=77"], capture_output=True, text=True, timeout=300)
    assert tools.returncode == 0, tools.stdout + tools.stderr
    installed = subprocess.run(
        [str(bin_dir / "python"), str(ROOT / "dev.py"), "install", "-q"],
        capture_output=True, text=True, timeout=600, env=clean_env(),
    )  # fmt: skip
    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert f"the flow command is {bin_dir / 'flow'}" in installed.stdout
    assert not (tmp_path / "env" / ".flowkernel-stamp").exists()  # no .venv of the repo's needed
    _check_environment(bin_dir, tmp_path, clean_env)


def test_dev_py_flow_resolves_files_against_the_callers_folder(tmp_path, clean_env):
    venv_python = ROOT / ".venv" / ("Scripts" if os.name == "nt" else "bin") / "python"
    if not (ROOT / ".venv" / ".flowkernel-stamp").exists() or not venv_python.exists():
        pytest.skip("the repository's .venv is not set up (python3 dev.py test sets it up)")
    shutil.copy(EXAMPLES / "fanout.py", tmp_path / "fanout.py")
    result = subprocess.run(
        [sys.executable, str(ROOT / "dev.py"), "flow", "run", "fanout.py", "--count", "2"],
        capture_output=True, text=True, cwd=tmp_path, timeout=300, env=clean_env(),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / ".flowkernel" / "FanoutFlow").is_dir()  # runs stored where the user is

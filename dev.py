#!/usr/bin/env python3
"""Set up the development environment and run things in it.

    python3 dev.py example    set up (if needed), run the example flow, show how to read it
    python3 dev.py test       set up (if needed), lint, and run every test of kernel and plugins
    python3 dev.py flow ...   run the `flow` command of .venv (files relative to where you are)
    python3 dev.py dist       build a wheel of every distribution into dist/
    PYTHON dev.py install     install the kernel and every plugin into PYTHON's environment

The virtual environment lives in .venv; it is rebuilt only when a pyproject.toml changes.
`dist` and `install` do not need it: they use the interpreter that runs dev.py.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".flowkernel-stamp"
EXAMPLE = ["flow", "run", "examples/hello.py", "--who", "flowkernel"]
READ_BACK = """
from flowkernel import Flow
run = Flow("HelloFlow").latest_run
print(f"\\nRun {run.pathspec} successful={run.successful}; stored under .flowkernel/")
print("end step artifacts:", {a.id: a.data for a in run["end"].task})
print("what shout printed:", run["shout"].task.stdout.splitlines())
"""


def distributions() -> list[Path]:
    """The root distribution and every plugin directory with a pyproject.toml."""
    plugins = sorted(p.parent for p in (ROOT / "plugins").glob("*/pyproject.toml"))
    return [ROOT, *plugins]


def fingerprint() -> str:
    h = hashlib.sha256(sys.version.encode())
    for dist in distributions():
        h.update(str(dist).encode())
        h.update((dist / "pyproject.toml").read_bytes())
    return h.hexdigest()


#: Quiet pip about setuptools' note that editable installs use a finder (shown once per
#: distribution, it looks like an error and is not one).
_PIP_ENV = {**os.environ, "PYTHONWARNINGS": "ignore:Editable installation"}


def setup() -> None:
    """Create .venv and install every distribution editable, unless nothing changed."""
    if STAMP.exists() and STAMP.read_text() == fingerprint():
        return
    print("dev.py: setting up .venv (first run, or a pyproject.toml changed) ...", flush=True)
    if not (BIN / "python").exists():
        venv.EnvBuilder(with_pip=True).create(VENV)
    pip = [str(BIN / "python"), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "--upgrade", "pip", "setuptools>=77"], check=True, env=_PIP_ENV)
    editable: list[str] = []
    for dist in distributions():
        editable += ["-e", str(dist)]
    subprocess.run([*pip, *editable, "-e", f"{ROOT}[test]"], check=True, env=_PIP_ENV)
    STAMP.write_text(fingerprint())


def compile_bytecode() -> None:
    """Cache bytecode of the repo's packages: where PYTHONDONTWRITEBYTECODE is set, nothing
    else does, and every `flow` start would compile the kernel again (~0.1 s)."""
    python = str(BIN / "python")
    subprocess.run([python, "-m", "compileall", "-q", "core", "plugins"], cwd=ROOT, check=False,
                   stdout=subprocess.DEVNULL)  # fmt: skip


def run(cmd: list[str], cwd: Path = ROOT) -> int:
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    env.pop("PYTHONPATH", None)
    return subprocess.call(cmd, cwd=cwd, env=env)


def _no_isolation() -> list[str]:
    """Build in this environment when it has a setuptools new enough (much faster than pip's
    isolated build environments, one per distribution); else let pip isolate the builds."""
    from importlib import metadata

    try:
        major = int(metadata.version("setuptools").split(".")[0])
    except (metadata.PackageNotFoundError, ValueError):
        return []
    return ["--no-build-isolation"] if major >= 77 else []


def dist(out: Path) -> int:
    """Build a wheel of the kernel and of every plugin into ``out`` (replacing older ones), so
    that ``pip install --find-links dist 'flowkernel[all]'`` works on another machine (the
    third-party dependencies come from the package index)."""
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("flowkernel*.whl"):
        old.unlink()
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check", "-q"]
    cmd += _no_isolation()
    code = subprocess.call([*cmd, "-w", str(out), *map(str, distributions())], env=_PIP_ENV)
    if code == 0:
        wheels = sorted(p.name for p in out.glob("flowkernel*.whl"))
        print(f"dev.py: {len(wheels)} wheels in {out}:", *wheels, sep="\n  ")
        print(f"install with: pip install --find-links {out} 'flowkernel[all]'")
    return code


def install(pip_args: list[str]) -> int:
    """Install the kernel and every plugin (not editable) into the environment of the Python
    running this script: ``/path/to/env/bin/python dev.py install``."""
    cmd = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", *pip_args]
    cmd += _no_isolation()
    code = subprocess.call([*cmd, *map(str, distributions())], env=_PIP_ENV)
    if code == 0:
        scripts = Path(sys.executable).parent
        print(f"dev.py: installed into {sys.prefix}; the flow command is {scripts / 'flow'}")
    return code


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    command, rest = argv[0], argv[1:]
    if command == "dist":
        return dist(Path(rest[0]).resolve() if rest else ROOT / "dist")
    if command == "install":
        return install(rest)
    setup()
    compile_bytecode()
    if command == "example":
        return run(EXAMPLE) or run(["python", "-c", READ_BACK])
    if command == "test":
        code = run(["ruff", "check", "."]) or run(["ruff", "format", "--check", "."])
        if code:
            return code
        return run(["python", "-m", "pytest", *rest])
    if command == "flow":
        return run(["flow", *rest], cwd=Path.cwd())  # FILE arguments are the caller's
    print(f"dev.py: unknown command {command!r}\n{__doc__}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Wheels contain what the source tree has, and every plugin follows the naming rules.

A subpackage missing from ``[tool.setuptools] packages`` works in an editable install and
silently vanishes from the wheel, so the wheels are built for real (from a copy of each source
tree, so nothing is written into the repo) and compared with the source tree.
"""

from __future__ import annotations

import configparser
import subprocess
import sys
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
PLUGIN_DIRS = sorted(p.parent for p in (ROOT / "plugins").glob("*/pyproject.toml"))
EXAMPLE_DIRS = sorted(p.parent for p in (ROOT / "examples" / "plugins").glob("*/pyproject.toml"))
ENTRY_POINT_GROUP = "flowkernel.plugins"


def _pyproject(folder: Path) -> dict:
    return tomllib.loads((folder / "pyproject.toml").read_text())


def _packages_in(src: Path, import_name: str) -> set[str]:
    """Dotted names of every directory with an ``__init__.py`` under ``src`` (tests excluded)."""
    found = set()
    for init in src.rglob("__init__.py"):
        rel = init.parent.relative_to(src)
        if "tests" in rel.parts or any(part.endswith(".egg-info") for part in rel.parts):
            continue
        found.add(".".join((import_name, *rel.parts)))
    return found


@pytest.fixture(scope="session")
def wheels(tmp_path_factory, copy_source) -> dict[Path, Path]:
    """Build the wheel of the root and of every plugin (in parallel); source dir -> wheel."""
    work = tmp_path_factory.mktemp("wheels")

    def build(src: Path) -> tuple[Path, Path]:
        copy = copy_source(src, work / "src" / (src.name if src != ROOT else "flowkernel"))
        out = work / "dist" / copy.name
        cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
        cmd += ["--no-index", "--disable-pip-version-check", "-q", "-w", str(out), str(copy)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        assert proc.returncode == 0, f"building {src} failed:\n{proc.stdout}{proc.stderr}"
        (wheel,) = out.glob("*.whl")
        return src, wheel

    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(pool.map(build, [ROOT, *PLUGIN_DIRS, *EXAMPLE_DIRS]))


def _entry_points(wheel: zipfile.ZipFile) -> configparser.ConfigParser:
    (name,) = [n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt")]
    parser = configparser.ConfigParser(delimiters=("=",))
    parser.optionxform = str  # keep names as written
    parser.read_string(wheel.read(name).decode())
    return parser


def _module_in(wheel: zipfile.ZipFile, value: str) -> bool:
    module = value.split(":")[0].strip()
    path = module.replace(".", "/")
    names = set(wheel.namelist())
    return f"{path}.py" in names or f"{path}/__init__.py" in names


def test_root_wheel_has_every_subpackage_and_module(wheels):
    with zipfile.ZipFile(wheels[ROOT]) as whl:
        names = set(whl.namelist())
        for package in sorted(_packages_in(ROOT / "core", "flowkernel")):
            assert f"{package.replace('.', '/')}/__init__.py" in names, (
                f"{package} is missing from the wheel: add it to [tool.setuptools] packages"
            )
        for module in (ROOT / "core").rglob("*.py"):
            rel = module.relative_to(ROOT / "core").as_posix()
            assert f"flowkernel/{rel}" in names, f"core/{rel} is missing from the wheel"
        assert "flowkernel/py.typed" in names


def test_root_wheel_entry_points(wheels):
    with zipfile.ZipFile(wheels[ROOT]) as whl:
        eps = _entry_points(whl)
        assert eps["console_scripts"]["flow"] == "flowkernel.cli.launch:main"
        assert eps["pytest11"]["flowkernel"] == "flowkernel.testing"
        for section in eps.sections():
            for value in eps[section].values():
                assert _module_in(whl, value), f"{section}: {value} is not in the wheel"


@pytest.mark.parametrize("plugin_dir", PLUGIN_DIRS, ids=lambda p: p.name)
def test_plugin_follows_naming_rules(plugin_dir):
    name = plugin_dir.name
    project = _pyproject(plugin_dir)["project"]
    assert project["name"] == f"flowkernel-{name.replace('_', '-')}"
    assert (plugin_dir / f"flowkernel_{name}" / "__init__.py").is_file()
    eps = project.get("entry-points", {}).get(ENTRY_POINT_GROUP, {})
    assert list(eps) == [name], f"one entry point named {name!r} in group {ENTRY_POINT_GROUP}"
    assert eps[name].startswith(f"flowkernel_{name}."), "point it at a module of the plugin"
    assert "flowkernel" in [d.split(";")[0].split(">")[0].strip() for d in project["dependencies"]]


@pytest.mark.parametrize("plugin_dir", PLUGIN_DIRS + EXAMPLE_DIRS, ids=lambda p: p.name)
def test_plugin_wheel_contents_and_entry_point(plugin_dir, wheels):
    project = _pyproject(plugin_dir)["project"]
    (name,) = project["entry-points"][ENTRY_POINT_GROUP]
    package = f"flowkernel_{name}"
    with zipfile.ZipFile(wheels[plugin_dir]) as whl:
        names = set(whl.namelist())
        for sub in sorted(_packages_in(plugin_dir / package, package)):
            assert f"{sub.replace('.', '/')}/__init__.py" in names, f"{sub} missing from wheel"
        eps = _entry_points(whl)
        assert dict(eps[ENTRY_POINT_GROUP]) == {
            name: project["entry-points"][ENTRY_POINT_GROUP][name]
        }
        assert _module_in(whl, eps[ENTRY_POINT_GROUP][name])
        assert not any(n.split("/")[0] == "tests" for n in names), "tests/ leaked into the wheel"


@pytest.mark.parametrize("example_dir", EXAMPLE_DIRS, ids=lambda p: p.name)
def test_example_plugin_follows_naming_rules(example_dir):
    project = _pyproject(example_dir)["project"]
    dist = project["name"]
    assert dist == example_dir.name and dist.startswith("flowkernel-")
    (name,) = project["entry-points"][ENTRY_POINT_GROUP]
    assert name == dist.removeprefix("flowkernel-").replace("-", "_")
    assert (example_dir / f"flowkernel_{name}" / "__init__.py").is_file()

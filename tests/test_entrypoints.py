"""The entry-point cache (flowkernel.entrypoints) as ``flow`` processes see it: a plugin
installed, edited, broken or removed between two starts is seen by the next start, whether or
not that start found a stored scan to reuse."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import zipfile

import pytest

from flowkernel import entrypoints

#: Builds the kernel as ``flow`` does and prints its plugin records and whether importlib's
#: scan ran (False: the stored scan was reused).
PROBE = """
import json, sys
import flowkernel.entrypoints as e
scanned = []
real = e._scan
e._scan = lambda group: scanned.append(group) or real(group)
from flowkernel.kernel import Kernel
kernel = Kernel.discover()
rows = [r.to_dict() for r in kernel.records if r.name.startswith("fkcache")]
print(json.dumps({"scanned": bool(scanned), "plugins": rows}))
"""


def _install(site, version="1.0", value="fkcache_demo.hooks"):
    """Install distribution fkcache-demo into ``site`` by hand (what pip leaves behind)."""
    (site / "fkcache_demo").mkdir(exist_ok=True)
    (site / "fkcache_demo" / "__init__.py").write_text("")
    (site / "fkcache_demo" / "hooks.py").write_text(
        "from flowkernel import hookimpl\n\n@hookimpl\ndef flowkernel_runtimes():\n    return []\n"
    )
    info = site / f"fkcache_demo-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: fkcache-demo\nVersion: {version}\n"
    )
    (info / "entry_points.txt").write_text(f"[flowkernel.plugins]\nfkcache = {value}\n")
    return info


@pytest.fixture
def probe(tmp_path, clean_env):
    """Run :data:`PROBE` in a fresh interpreter with ``site`` on its path and its own cache."""
    site = tmp_path / "site"
    site.mkdir()
    env = clean_env(PYTHONPATH=str(site), XDG_CACHE_HOME=str(tmp_path / "cache"))

    def run(cwd=tmp_path) -> dict:
        proc = subprocess.run(
            [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, cwd=cwd
        )
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    run.site = site
    return run


def _settle():
    """Let every timestamp the scan reads age past SETTLE, so that the next scan is stored."""
    time.sleep(entrypoints.SETTLE + 0.2)


def _status(result):
    return [(p["name"], p["status"]) for p in result["plugins"]]


def test_a_stored_scan_is_reused_while_nothing_changes(probe):
    _install(probe.site)
    _settle()
    first, second = probe(), probe()
    assert first["scanned"] and not second["scanned"]
    assert _status(first) == _status(second) == [("fkcache", "loaded")]
    assert second["plugins"][0]["distribution"] == "fkcache-demo"
    assert second["plugins"][0]["version"] == "1.0"


def test_another_working_directory_without_distributions_reuses_it(probe, tmp_path):
    """``python -c`` and ``python -m`` put the working directory on sys.path: a fresh one (no
    distributions in it) reads nothing more, so the stored scan still holds."""
    _install(probe.site)
    _settle()
    probe()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    again = probe(cwd=elsewhere)
    assert not again["scanned"] and _status(again) == [("fkcache", "loaded")]
    (elsewhere / "other-1.0.dist-info").mkdir()  # one that has: read, so scanned
    assert probe(cwd=elsewhere)["scanned"]


def test_install_and_uninstall_between_two_starts(probe):
    _settle()
    assert _status(probe()) == []
    assert not probe()["scanned"]  # nothing installed, remembered
    info = _install(probe.site)
    assert _status(probe()) == [("fkcache", "loaded")]  # not hidden by the stored scan
    _settle()
    probe()
    assert not probe()["scanned"]
    shutil.rmtree(info)
    after = probe()
    assert after["scanned"] and _status(after) == []  # not resurrected by the stored scan


def test_an_upgrade_and_an_edited_entry_points_txt(probe):
    info = _install(probe.site)
    _settle()
    probe()
    assert not probe()["scanned"]
    # edited in place, the directory untouched: now a module that does not exist
    (info / "entry_points.txt").write_text("[flowkernel.plugins]\nfkcache = fkcache_gone.hooks\n")
    broken = probe()
    assert broken["scanned"] and _status(broken) == [("fkcache", "failed")]
    _settle()
    probe()
    again = probe()
    assert not again["scanned"]  # a broken plugin from the stored scan is still named
    assert _status(again) == [("fkcache", "failed")]
    assert "fkcache_gone" in again["plugins"][0]["error"]
    assert again["plugins"][0]["distribution"] == "fkcache-demo"
    # upgraded the way pip does it: the old directory removed, the new one added
    shutil.rmtree(info)
    _install(probe.site, version="2.0")
    upgraded = probe()
    assert _status(upgraded) == [("fkcache", "loaded")]
    assert upgraded["plugins"][0]["version"] == "2.0"


def test_entry_points_txt_added_to_an_installed_distribution(probe):
    info = _install(probe.site)
    (info / "entry_points.txt").unlink()
    _settle()
    probe()
    assert _status(probe()) == []
    (info / "entry_points.txt").write_text("[flowkernel.plugins]\nfkcache = fkcache_demo.hooks\n")
    assert _status(probe()) == [("fkcache", "loaded")]


def test_a_damaged_cache_file_is_scanned_again(probe, tmp_path):
    _install(probe.site)
    _settle()
    probe()
    (cache_file,) = (tmp_path / "cache" / "flowkernel").iterdir()
    stored = json.loads(cache_file.read_text())
    for damaged in ({**stored, "entry_points": [["fkcache"]]}, {"format": stored["format"]}):
        cache_file.write_text(json.dumps(damaged))
        again = probe()
        assert again["scanned"] and _status(again) == [("fkcache", "loaded")]
    cache_file.write_text(cache_file.read_text()[:20])  # cut short
    assert _status(probe()) == [("fkcache", "loaded")]


def test_not_used_with_a_zip_on_the_path_or_with_the_cache_off(tmp_path, monkeypatch):
    archive = tmp_path / "plugins.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("x.dist-info/entry_points.txt", "[flowkernel.plugins]\nx = x\n")
    assert entrypoints._signature([str(tmp_path), str(archive)]) is None
    assert entrypoints._signature([str(tmp_path / "missing.egg")]) is None
    monkeypatch.setenv("FLOWKERNEL_ENTRY_POINT_CACHE", "0")
    assert not entrypoints._usable()


def test_not_used_once_importlib_metadata_is_imported(monkeypatch):
    """A process that imported importlib.metadata may have replaced entry_points (tests do:
    flowkernel.testing's fake_entry_points)."""
    monkeypatch.delenv("FLOWKERNEL_ENTRY_POINT_CACHE", raising=False)
    assert "importlib.metadata" in sys.modules  # (pytest imports it)
    assert not entrypoints._usable()

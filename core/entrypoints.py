"""The ``flowkernel.plugins`` entry points, remembered between ``flow`` starts.

Finding them with :func:`importlib.metadata.entry_points` costs a ``flow`` start ~15 ms on a
virtualenv of ~100 distributions: importing :mod:`importlib.metadata` (email, zipfile, csv,
...) and reading every distribution's ``entry_points.txt``. What that scan reads is a short
list of files and directories, so its result is stored in a small cache file with the
identity (inode, size, mtime and ctime in nanoseconds) of each of them, and used again only
while all of them are exactly as they were:

* every ``sys.path`` entry (its listing: a distribution installed, removed or upgraded adds,
  removes or renames a ``*.dist-info`` / ``*.egg-info`` directory there, which changes the
  directory's mtime and ctime), or the fact that it does not exist;
* the ``entry_points.txt`` of every ``*.dist-info`` / ``*.egg-info`` directory in them, or
  the fact that there is none (added, removed, replaced, edited in place).

The ctime cannot be set back by tools that restore mtimes (``tar``, ``rsync -t``). A change
within the file system's timestamp granularity of the scan could leave a timestamp unchanged,
so a scan that saw any timestamp less than :data:`SETTLE` seconds old is not stored (the next
start scans again). The cache is never used when the scan could depend on anything else:
``sys.path`` holds a zip file or an egg, a finder on ``sys.meta_path`` other than the
standard ``PathFinder`` finds distributions, a found distribution is not a directory on disk,
or :mod:`importlib.metadata` is imported already (a process that imported it may have replaced
``entry_points``, as tests do; and the import, the larger part of the saving, is paid then).

The cached entry points load the way :meth:`importlib.metadata.EntryPoint.load` does (a value
that does not have the ``module:attr`` form is not cached), and their distribution is read
only when asked for (``flow plugins``, a failure message). ``FLOWKERNEL_ENTRY_POINT_CACHE=0``
turns the cache off. It lives in ``$XDG_CACHE_HOME/flowkernel`` (``~/.cache/flowkernel``), one
file per interpreter and ``sys.path`` (the last :data:`KEEP` used); nothing is stored where
that is not writable.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import json
import os
import re
import stat
import sys
import time
from typing import Any

#: Seconds a timestamp must be older than the scan for the scan to be stored.
SETTLE = 2.0
#: Cache files kept (see :func:`_prune`).
KEEP = 32
_FORMAT = 1
#: What :meth:`importlib.metadata.EntryPoint.load` accepts as a value (its ``pattern``).
_VALUE = re.compile(r"(?P<module>[\w.]+)\s*(:\s*(?P<attr>[\w.]+)\s*)?((?P<extras>\[.*\])\s*)?$")


class CachedEntryPoint:
    """An entry point read from the cache: what the kernel uses of
    :class:`importlib.metadata.EntryPoint` (``name``, ``value``, ``group``, ``load()`` and
    ``dist``, read on first use)."""

    def __init__(self, name: str, value: str, group: str, dist_path: str):
        self.name = name
        self.value = value
        self.group = group
        self._dist_path = dist_path

    def load(self) -> Any:
        """Import the module and get the attribute the value names (as ``EntryPoint.load``)."""
        match = _VALUE.match(self.value)
        assert match is not None  # (only values that match are cached)
        module = importlib.import_module(match.group("module"))
        attrs = filter(None, (match.group("attr") or "").split("."))
        return functools.reduce(getattr, attrs, module)

    @functools.cached_property
    def dist(self) -> Any:
        from importlib import metadata
        from pathlib import Path

        return metadata.PathDistribution(Path(self._dist_path))

    def __repr__(self) -> str:
        return f"CachedEntryPoint(name={self.name!r}, value={self.value!r}, group={self.group!r})"


def entry_points(group: str) -> list[Any]:
    """The entry points of ``group`` (as :func:`importlib.metadata.entry_points` finds them),
    from the cache when nothing its scan reads has changed since it was stored."""
    if not _usable():
        return _scan(group)
    paths = [os.path.abspath(entry or ".") for entry in sys.path]
    cache_file = _cache_file(group, paths)
    started = time.time()
    signature = _signature(paths)
    if signature is None:
        return _scan(group)
    stored = _read(cache_file)
    if stored is not None and stored.get("paths") == paths and stored["signature"] == signature:
        return [
            CachedEntryPoint(name, value, group, dist)
            for name, value, dist in stored["entry_points"]
        ]
    eps = _scan(group)
    if _settled(signature, started):
        _store(cache_file, paths, signature, eps)
    return eps


def _scan(group: str) -> list[Any]:
    from importlib import metadata

    return list(metadata.entry_points(group=group))


def _usable() -> bool:
    if os.environ.get("FLOWKERNEL_ENTRY_POINT_CACHE", "1").lower() in ("0", "false", "no"):
        return False
    if "importlib.metadata" in sys.modules:
        return False
    from importlib.machinery import PathFinder

    return not any(
        finder is not PathFinder and getattr(finder, "find_distributions", None) is not None
        for finder in sys.meta_path
    )


def _cache_file(group: str, paths: list[str]) -> str | None:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    if not os.path.isabs(base):
        return None  # (no home: "~" left as it is)
    key = json.dumps([sys.executable, sys.prefix, sys.version, group, paths, _FORMAT])
    name = f"entry-points-{hashlib.sha1(key.encode()).hexdigest()[:16]}.json"
    return os.path.join(base, "flowkernel", name)


def _identity(st: os.stat_result) -> list[int]:
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def _signature(paths: list[str]) -> list[Any] | None:
    """The identity of everything the scan of ``paths`` reads, in order; ``None`` when the
    scan could read something else (a zip file or an egg on the path)."""
    signature: list[Any] = []
    for path in paths:
        if path.lower().endswith(".egg"):
            return None
        try:
            st = os.stat(path)
        except OSError:
            signature.append([path, None])  # (not there: importlib finds nothing in it)
            continue
        if not stat.S_ISDIR(st.st_mode):
            return None
        signature.append([path, _identity(st)])
        try:
            names = sorted(os.listdir(path))
        except OSError:
            return None
        for name in names:
            if not name.lower().endswith((".dist-info", ".egg-info")):
                continue
            # its entry_points.txt added, removed, replaced or edited: a new identity (or
            # None); the directory itself replaced: a new listing of ``path``
            each = os.path.join(path, name, "entry_points.txt")
            try:
                signature.append([each, _identity(os.stat(each))])
            except OSError:
                signature.append([each, None])
    return signature


def _settled(signature: list[Any], started: float) -> bool:
    """No timestamp of ``signature`` is within :data:`SETTLE` seconds of the scan (or later)."""
    limit = int((started - SETTLE) * 1e9)
    return all(ident is None or max(ident[3], ident[4]) < limit for _, ident in signature)


def _read(cache_file: str | None) -> dict[str, Any] | None:
    if cache_file is None:
        return None
    try:
        with open(cache_file, encoding="utf-8") as fh:
            stored = json.load(fh)
    except (OSError, ValueError):
        return None
    return stored if isinstance(stored, dict) and stored.get("format") == _FORMAT else None


def _store(cache_file: str | None, paths: list[str], signature: list[Any], eps: list[Any]) -> None:
    """Write the cache (atomically), unless an entry point or its distribution is not of the
    kind the cache reproduces exactly."""
    if cache_file is None:
        return
    found = []
    for ep in eps:
        dist_path = getattr(getattr(ep, "dist", None), "_path", None)
        if dist_path is None or not os.path.isdir(dist_path) or not _VALUE.match(ep.value):
            return
        found.append([ep.name, ep.value, os.fspath(dist_path)])
    data = {"format": _FORMAT, "paths": paths, "signature": signature, "entry_points": found}
    tmp = f"{cache_file}.{os.getpid()}.tmp"
    try:
        os.makedirs(os.path.dirname(cache_file), exist_ok=True)
        _prune(os.path.dirname(cache_file))
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(data, fh)
        os.replace(tmp, cache_file)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass


def _prune(folder: str) -> None:
    """Keep at most :data:`KEEP` cache files (one per interpreter and ``sys.path``: ``python
    -m`` and ``python myflow.py`` put their directory first), removing the least recent."""
    entries = [e for e in os.scandir(folder) if e.name.startswith("entry-points-")]
    if len(entries) < KEEP:
        return
    entries.sort(key=lambda e: e.stat().st_mtime_ns)
    for entry in entries[: len(entries) - KEEP + 1]:
        try:
            os.unlink(entry.path)
        except OSError:
            pass

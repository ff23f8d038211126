"""The ``flowkernel.plugins`` entry points, remembered between ``flow`` starts.

Finding them with :func:`importlib.metadata.entry_points` costs a ``flow`` start ~15 ms on a
virtualenv of ~100 distributions: importing :mod:`importlib.metadata` (email, zipfile, csv,
...) and reading every distribution's ``entry_points.txt``. What that scan reads is the listing
of each ``sys.path`` directory (the ``*.dist-info`` / ``*.egg-info`` directories in it, in
order) and the ``entry_points.txt`` in each of those. So its result is stored in a small cache
file with exactly that, and used again only while it is the same:

* the names of the ``*.dist-info`` / ``*.egg-info`` entries of every ``sys.path`` directory,
  listed again at every start (a distribution installed, removed or upgraded adds, removes or
  renames one);
* the identity of each of their ``entry_points.txt`` (inode, size, mtime and ctime in
  nanoseconds), or the fact that there is none: added, removed, replaced or edited in place.

The ctime cannot be set back by tools that restore mtimes (``tar``, ``rsync -t``). An edit
within the file system's timestamp granularity of the scan could leave a timestamp unchanged,
so a scan that saw an ``entry_points.txt`` changed less than :data:`SETTLE` seconds before is not
stored (the next start scans again). The cache is never used when the scan could depend on
anything else: ``sys.path`` holds a zip file or an egg, a finder on ``sys.meta_path`` other
than the standard ``PathFinder`` finds distributions, a found distribution is not a directory
on disk, or :mod:`importlib.metadata` is imported already (a process that imported it may have
replaced ``entry_points``, as tests do; and the import, the larger part of the saving, is paid
then).

The cached entry points load the way :meth:`importlib.metadata.EntryPoint.load` does (a value
that does not have the ``module:attr`` form is not cached), and their distribution is read
only when asked for (``flow plugins``, a failure message). ``FLOWKERNEL_ENTRY_POINT_CACHE=0``
turns the cache off. It lives in ``$XDG_CACHE_HOME/flowkernel`` (``~/.cache/flowkernel``), one
file per interpreter; nothing is stored where that is not writable.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import json
import os
import re
import sys
import time
from typing import Any

#: Seconds a timestamp must be older than the scan for the scan to be stored.
SETTLE = 2.0
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
    cache_file = _cache_file(group)
    started = time.time()
    signature = _signature(paths)
    if signature is None:
        return _scan(group)
    stored = _read(cache_file)
    if stored is not None and stored.get("signature") == signature:
        try:
            return [
                CachedEntryPoint(str(name), str(value), group, str(dist))
                for name, value, dist in stored["entry_points"]
            ]
        except (KeyError, TypeError, ValueError):
            pass  # a damaged cache file: scanned again (and written again)
    eps = _scan(group)
    if _settled(signature, started):
        _store(cache_file, signature, eps)
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


def _cache_file(group: str) -> str | None:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    if not os.path.isabs(base):
        return None  # (no home: "~" left as it is)
    key = json.dumps([sys.executable, sys.prefix, sys.version, group, _FORMAT])
    name = f"entry-points-{hashlib.sha1(key.encode()).hexdigest()[:16]}.json"
    return os.path.join(base, "flowkernel", name)


def _identity(st: os.stat_result) -> list[int]:
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def _signature(paths: list[str]) -> list[Any] | None:
    """What the scan of ``paths`` reads, in its order: each ``*.dist-info`` / ``*.egg-info``
    entry of each directory and the identity of its ``entry_points.txt`` (None: there is
    none); ``None`` when the scan could read something else (a zip file or an egg)."""
    signature: list[Any] = []
    for path in paths:
        if path.lower().endswith(".egg"):
            return None
        try:
            names = os.listdir(path)
        except FileNotFoundError:
            continue  # (not there: importlib finds nothing in it)
        except NotADirectoryError:
            return None  # a zip file
        except OSError:
            return None
        for name in sorted(names):
            if not name.lower().endswith((".dist-info", ".egg-info")):
                continue
            each = os.path.join(path, name, "entry_points.txt")
            try:
                signature.append([each, _identity(os.stat(each))])
            except OSError:
                signature.append([each, None])
    return signature


def _settled(signature: list[Any], started: float) -> bool:
    """No ``entry_points.txt`` of ``signature`` changed within :data:`SETTLE` seconds of the
    scan (or later)."""
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


def _store(cache_file: str | None, signature: list[Any], eps: list[Any]) -> None:
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
    data = {"format": _FORMAT, "signature": signature, "entry_points": found}
    tmp = f"{cache_file}.{os.getpid()}.tmp"
    try:
        os.makedirs(os.path.dirname(cache_file), exist_ok=True)
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(data, fh)
        os.replace(tmp, cache_file)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass

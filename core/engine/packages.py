"""Code packages: a flow's code as one deterministic, content-addressed archive in the datastore.

``flow package FILE`` (:func:`build_package` + :func:`store_package`) archives the flow file's
directory: the Python modules and packages beside the flow, config files (``.json``, ``.yaml``,
``.toml``, ...), the default files of the flow's ``Config``\\ s, and anything ``--include`` names;
never ``.git``, virtual environments, ``__pycache__`` or datastore directories, nor anything
``--exclude`` names. The archive is a tar with fixed metadata (sorted names, zero times and
owners), so the same code gives the same bytes and the same key on every machine: its key is
``<Flow>/<sha256 of the tar>``, and it is stored gzip-compressed, once, under
``<Flow>/code/<sha256>.tar.gz``.

``flow step ... --package KEY`` (:func:`fetch_package`) fetches a package once per key into a
local cache, verifies it, extracts it and imports the flow from there: a task needs only the
image (Python + flowkernel) and the datastore root, not the code.
"""

from __future__ import annotations

import fnmatch
import gzip
import hashlib
import io
import json
import os
import shutil
import tarfile
import uuid
from collections.abc import Iterable

import attrs

from flowkernel.datastore import FlowStore
from flowkernel.errors import UsageError

#: The file in every package that says which flow it holds.
MANIFEST = ".flowkernel-package.json"
DEFAULT_SUFFIXES = (".py", ".json", ".yaml", ".yml", ".toml", ".cfg", ".ini")
#: Directories never packaged (besides virtual environments, found by their ``pyvenv.cfg``).
EXCLUDED_DIRS = frozenset(
    {".git", ".hg", ".svn", "__pycache__", ".flowkernel", ".venv", "venv", "node_modules",
     ".mypy_cache", ".pytest_cache", ".ruff_cache", ".ipynb_checkpoints", ".tox", ".nox",
     ".eggs", "build", "dist"}
)  # fmt: skip
DEFAULT_MAX_MB = 50.0


@attrs.frozen
class CodePackage:
    """A built package: the tar's bytes and what is in it."""

    flow_name: str
    flow_file: str  #: the flow file's path inside the package
    files: tuple[tuple[str, int], ...]  #: (path inside the package, size) of every file
    tar: bytes = attrs.field(repr=False)
    sha: str = ""  #: sha256 of ``tar``

    @property
    def key(self) -> str:
        return f"{self.flow_name}/{self.sha}"

    @property
    def size(self) -> int:
        return sum(size for _, size in self.files)


def _is_venv(path: str) -> bool:
    return os.path.exists(os.path.join(path, "pyvenv.cfg"))


def _matches(rel: str, patterns: Iterable[str]) -> bool:
    name = os.path.basename(rel)
    return any(fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(name, p) for p in patterns)


def collect_files(
    base: str, include: Iterable[str] = (), exclude: Iterable[str] = (), extra: Iterable[str] = ()
) -> list[str]:
    """Paths (relative to ``base``, ``/``-separated, sorted) of the files a package holds."""
    include, exclude = tuple(include), tuple(exclude)
    found: set[str] = set()
    for folder, dirs, files in os.walk(base):
        rel_dir = os.path.relpath(folder, base)
        dirs[:] = sorted(
            d
            for d in dirs
            if d not in EXCLUDED_DIRS
            and not d.endswith(".egg-info")
            and not _is_venv(os.path.join(folder, d))
            and not _matches(os.path.normpath(os.path.join(rel_dir, d)), exclude)
        )
        for name in files:
            rel = os.path.normpath(os.path.join(rel_dir, name)).replace(os.sep, "/")
            wanted = name.endswith(DEFAULT_SUFFIXES) or _matches(rel, include)
            if wanted and name != MANIFEST and not _matches(rel, exclude):
                found.add(rel)
    for path in extra:
        rel = os.path.relpath(os.path.abspath(path), base).replace(os.sep, "/")
        if not rel.startswith("../") and os.path.isfile(path) and not _matches(rel, exclude):
            found.add(rel)
    return sorted(found)


def build_package(
    flow_file: str,
    flow_name: str,
    include: Iterable[str] = (),
    exclude: Iterable[str] = (),
    extra_files: Iterable[str] = (),
    max_mb: float = DEFAULT_MAX_MB,
) -> CodePackage:
    """Archive the code of the flow in ``flow_file`` (its directory, filtered as described above).

    :param extra_files: files to add if they are inside the flow's directory (config defaults).
    :raises UsageError: the files add up to more than ``max_mb`` MB (names the largest).
    """
    flow_file = os.path.abspath(flow_file)
    base = os.path.dirname(flow_file)
    rel_flow = os.path.relpath(flow_file, base)
    names = collect_files(base, include, exclude, [flow_file, *extra_files])
    sizes = [(n, os.path.getsize(os.path.join(base, n))) for n in names]
    total = sum(s for _, s in sizes)
    if total > max_mb * 1e6:
        largest = sorted(sizes, key=lambda item: -item[1])[:5]
        listed = ", ".join(f"{n} ({s / 1e6:.1f} MB)" for n, s in largest)
        raise UsageError(
            f"the code package of {flow_file} would be {total / 1e6:.1f} MB, over the "
            f"{max_mb:g} MB limit (--max-size-mb); largest files: {listed}. Leave them out "
            "with --exclude PATTERN"
        )
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        manifest = json.dumps({"flow_name": flow_name, "flow_file": rel_flow}).encode()
        _add(tar, MANIFEST, manifest, 0o644)
        for name, _ in sizes:
            path = os.path.join(base, name)
            with open(path, "rb") as fh:
                data = fh.read()
            _add(tar, name, data, 0o755 if os.access(path, os.X_OK) else 0o644)
    data = buf.getvalue()
    sha = hashlib.sha256(data).hexdigest()
    return CodePackage(flow_name, rel_flow, tuple(sizes), data, sha)


def _add(tar: tarfile.TarFile, name: str, data: bytes, mode: int) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(data))


def store_package(root: str, package: CodePackage) -> str:
    """Put ``package`` in the datastore at ``root`` (once: same code, same object); its key."""
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0, filename="") as gz:
        gz.write(package.tar)
    FlowStore(root, package.flow_name).put_package(package.sha, out.getvalue())
    return package.key


def parse_key(key: str) -> tuple[str, str]:
    flow_name, _, sha = key.partition("/")
    if not flow_name or len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise UsageError(
            f"invalid package key {key!r}: expected FLOW/SHA256 (what `flow package` prints)"
        )
    return flow_name, sha


def cache_dir() -> str:
    return os.environ.get("FLOWKERNEL_PACKAGE_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "flowkernel", "packages"
    )


def fetch_package(root: str, key: str, cache: str | None = None) -> str:
    """The flow file of package ``key``, extracted (once per key) under the local cache.

    :raises UsageError: no such package under ``root``, or its content does not match its key.
    """
    flow_name, sha = parse_key(key)
    target = os.path.join(cache or cache_dir(), sha)
    if not os.path.exists(os.path.join(target, MANIFEST)):
        data = FlowStore(root, flow_name).get_package(sha)
        if data is None:
            raise UsageError(f"no code package {key} under {root}")
        tar = gzip.decompress(data)
        if hashlib.sha256(tar).hexdigest() != sha:
            raise UsageError(f"code package {key} under {root} is damaged (its hash differs)")
        tmp = f"{target}.{uuid.uuid4().hex}.tmp"
        os.makedirs(tmp)
        with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
            for member in archive.getmembers():  # what we write has no links, no ../
                if not member.isfile() or member.name.startswith("/") or ".." in member.name:
                    raise UsageError(f"code package {key} holds an unsafe entry {member.name}")
            archive.extractall(tmp)
        try:
            os.rename(tmp, target)
        except OSError:  # another task extracted the same package meanwhile
            shutil.rmtree(tmp, ignore_errors=True)
    with open(os.path.join(target, MANIFEST)) as fh:
        manifest = json.load(fh)
    return os.path.join(target, manifest["flow_file"])
